"""Phase names on the report's charts: named where they fit, left to the phase table where they would overlap."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from matchlab.experiment.record import ExperimentRecord, PhaseRecord
from matchlab.loadgen.results import LoadResult
from matchlab.observe.charts import shade_phases


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
