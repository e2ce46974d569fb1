"""Phase names on the report's charts: named where they fit, left to the phase table where they would overlap."""

from __future__ import annotations

from dataclasses import replace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from matchlab.experiment.record import ExperimentRecord, PhaseRecord
from matchlab.loadgen.results import LoadResult, SecondStats
from matchlab.reporting.charts import shade_phases


def record(durations: list[float]) -> ExperimentRecord:
    exp = ExperimentRecord("S1", "steps", "ASR 2", "gateway", "")
    t = 1000.0
    load = LoadResult(100.0, 8.0, 800, 800, 800, 0, {}, 100.0, {}, {}, {}, [])
    for i, seconds in enumerate(durations):
        exp.phases.append(PhaseRecord(f"step{i}", t, t + seconds, None, 100.0, ["a"], load))
        t += seconds
    return exp


def drawn_names(exp: ExperimentRecord) -> list[str]:
    fig, ax = plt.subplots()
    shade_phases(ax, exp, exp.phases[0].start)
    names = [t.get_text().strip() for t in ax.texts]
    plt.close(fig)
    return names


def test_long_phases_are_named_and_a_search_of_short_steps_is_not():
    assert drawn_names(record([60, 120, 60])) == ["step0", "step1", "step2"]
    # Two long phases among 30 eight-second steps: only the long ones keep their names.
    names = drawn_names(record([120] + [8] * 30 + [120]))
    assert names == ["step0", "step31"], names


def legend_of_load_chart(exp: ExperimentRecord) -> list[str]:
    from matchlab.reporting.charts import load_chart

    svg, drawn = load_chart(exp)
    assert drawn == len(exp.phases)  # every phase's series is still drawn
    return [name for name in ("answered 200 (each step)", "step0 answered 200", "step1 answered 200") if name in svg]


def test_a_search_of_many_steps_gets_one_legend_entry_and_a_few_phases_one_each():
    assert legend_of_load_chart(record_with_timeline([60, 120, 60])) == ["step0 answered 200", "step1 answered 200"]
    assert legend_of_load_chart(record_with_timeline([8] * 30)) == ["answered 200 (each step)"]


def record_with_timeline(durations: list[float]) -> ExperimentRecord:
    exp = record(durations)
    for phase in exp.phases:
        phase.load = replace(phase.load, timeline=[SecondStats(i, 100, 100, 100) for i in range(3)])
    return exp


def test_the_percentile_chart_of_many_steps_has_one_legend_entry():
    from matchlab.reporting.charts import percentile_chart

    def with_latencies(exp: ExperimentRecord) -> ExperimentRecord:
        for phase in exp.phases:
            phase.load = replace(phase.load, latency_ms={"p50": 1.0, "p99": 5.0, "count": 800})
        return exp

    svg, drawn = percentile_chart(with_latencies(record([8] * 30)))
    assert drawn == 30 and "each step, dark (first) to light (last)" in svg and "step3 (n=800)" not in svg
    svg, drawn = percentile_chart(with_latencies(record([60, 60])))
    assert drawn == 2 and "step0 (n=800)" in svg and "step1 (n=800)" in svg
