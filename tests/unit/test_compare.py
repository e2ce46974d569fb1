"""``python -m matchlab.compare``: same system reads ~, +2 ms reads worse, exit codes, incomplete runs refused."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from matchlab.compare.__main__ import comparison_with, main
from matchlab.compare.runs import compare_runs, load_results, samples, window_histograms
from matchlab.compare.stats import Histogram, mann_whitney, pooled, quantile_change, rise_change, shift_change
from matchlab.experiment import registry
from matchlab.experiment.profiles import PROFILES
from matchlab.observe.verdicts import Status, judge, worst_of_repetitions
from tests.synthetic_runs import repeated_run, synthetic_run, write_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {
        "same1": write_run(root / "same1", seed=1),
        "same2": write_run(root / "same2", seed=2),
        "slow": write_run(root / "slow", seed=3, shift_s=0.002),
        "cut": write_run(root / "cut", seed=4, seconds=20, complete=False),
    }


def rows_by_name(a, b):
    return {r.what: r for r in compare_runs(load_results(a), load_results(b))}


def test_two_runs_of_the_same_system_compare_as_no_difference(runs):
    rows = rows_by_name(runs["same1"], runs["same2"])
    tested = [r for r in rows.values() if r.change is not None]
    assert {"A2 client p99 (measured)", "A2 answered orders/s"} <= set(rows)
    assert len(tested) == 5  # client p50 and p99, the rate, the server-side A2.p99 and its window's p50
    assert all(r.reading == "~" for r in tested), [(r.what, r.change) for r in tested]
    assert rows["A2.queue (matcher queue near empty)"].reading == "n/a"


def test_two_ms_more_latency_compares_as_worse_with_the_interval_excluding_zero(runs):
    rows = rows_by_name(runs["same1"], runs["slow"])
    for name in ("A2 client p50 (measured)", "A2 client p99 (measured)", "A2.p99 (p99 match latency (shard a))",
                 "A2.p99 window: server p50 (shard a)"):
        row = rows[name]
        assert row.reading == "worse", name
        assert row.change.low > 0, (name, row.change)
        assert row.change.low < 0.002 < row.change.high or name != "A2 client p50 (measured)"
    assert rows["A2 answered orders/s"].reading == "~"  # same rate: the latency moved, not the load
    back = rows_by_name(runs["slow"], runs["same1"])
    assert back["A2 client p99 (measured)"].reading == "better" and back["A2 client p99 (measured)"].change.high < 0


def test_fail_on_worse_exits_one_on_a_significant_regression_beyond_the_threshold(runs, capsys):
    assert main([str(runs["same1"]), str(runs["slow"]), "--fail-on-worse", "10%"]) == 1
    assert "worse beyond 10%" in capsys.readouterr().out
    # The p50 rose by ~67 %: beyond 100 % nothing regressed.
    assert main([str(runs["same1"]), str(runs["slow"]), "--fail-on-worse", "100%"]) == 0
    assert main([str(runs["same1"]), str(runs["same2"]), "--fail-on-worse", "10%"]) == 0
    assert main([str(runs["same1"].parent), str(runs["same2"].parent)]) == 0  # run folders work as well


def test_an_incomplete_run_is_refused_with_one_clear_line(runs, capsys):
    assert main([str(runs["same1"]), str(runs["cut"])]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "incomplete run" in err and "no (interrupted)" in err and str(runs["cut"]) in err


def test_a_missing_or_broken_file_is_one_line_too(tmp_path, capsys):
    (tmp_path / "results.json").write_text("{not json")
    assert main([str(tmp_path), str(tmp_path / "nowhere")]) == 2
    assert "is not JSON" in capsys.readouterr().err


def test_mann_whitney_matches_the_textbook_example():
    # Two groups with no overlap: U is n1*n2 (or 0) and the normal approximation gives p ~ 0.008 for 5 vs 5.
    u, p = mann_whitney([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    assert u == 25 and p == pytest.approx(0.0090, abs=0.001)
    assert mann_whitney([1, 2, 3], [1, 2, 3])[1] == pytest.approx(1.0)


def test_the_rate_interval_covers_the_true_shift():
    rng = np.random.default_rng(0)
    a, b = rng.poisson(100, 120), rng.poisson(110, 120)
    change = shift_change(a.tolist(), b.tolist())
    assert change.low < 10 < change.high and change.significant
    assert shift_change([1.0] * 3, [2.0] * 3) is None  # too few seconds to test


def test_quantile_bootstrap_covers_the_true_difference_most_of_the_time():
    rng = np.random.default_rng(2)
    covered = 0
    for _ in range(60):
        xa = np.round(rng.exponential(1.0, 1000), 3)  # about the resolution of an HdrHistogram
        xb = np.round(rng.exponential(1.0, 1000) + 0.5, 3)
        ha, hb = (Histogram.points(*np.unique(x, return_counts=True)) for x in (xa, xb))
        c = quantile_change(ha, hb, 0.5)
        covered += c.low <= 0.5 <= c.high
    # Nominal 95 % (57 of 60); the percentile bootstrap of a median runs a little short (measured
    # over 300 trials: 90-93 %), and an interval far too narrow would cover far fewer.
    assert covered >= 51


def test_compare_to_compares_a_finished_session_and_says_why_not_otherwise(runs):
    lines = comparison_with(runs["same1"], synthetic_run(seed=3, shift_s=0.002))
    assert lines[1].startswith("B this run") and any("A2 client p99 (measured)" in x and "worse" in x for x in lines)
    cut = synthetic_run(seed=2, seconds=20, complete=False)
    assert comparison_with(runs["same1"], cut) == ["not compared: this run is incomplete (no (interrupted))"]


def test_pytest_refuses_an_incomplete_baseline_before_running_anything(runs, tmp_path):
    done = subprocess.run([sys.executable, "-m", "pytest", "--compare-to", str(runs["cut"]), "--collect-only", "-q",
                           "-p", "no:cacheprovider", str(tmp_path)], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 4, done.stdout + done.stderr  # pytest's usage error
    assert "--compare-to:" in done.stderr and "incomplete run" in done.stderr


def test_the_html_report_carries_the_comparison_when_asked(runs):
    from types import SimpleNamespace

    from fixtures.experiments import RECORD_KEY, pytest_html_results_summary
    from matchlab.harness.options import OPTIONS_KEY, HarnessOptions, Profile

    opts = HarnessOptions("local", Profile.QUICK, False, runs["same1"].parent, None, None, False,
                          compare_to=runs["same1"])
    session = SimpleNamespace(config=SimpleNamespace(stash={RECORD_KEY: synthetic_run(seed=3, shift_s=0.002),
                                                            OPTIONS_KEY: opts},
                                                     option=SimpleNamespace(htmlpath=None)))
    prefix: list[str] = []
    pytest_html_results_summary(prefix, [], [], session)
    assert len(prefix) == 2 and prefix[1].startswith(f"<h2>Comparison with {runs['same1']}</h2><pre>")
    assert "A2 client p99 (measured)" in prefix[1] and "worse" in prefix[1]


def test_a_rise_is_compared_from_both_windows_of_both_runs():
    rng = np.random.default_rng(5)

    def window(scale):
        return Histogram.points(*np.unique(np.round(rng.exponential(scale, 4000), 4), return_counts=True))

    steady = (window(1.0), window(1.0))
    same = rise_change(steady, (window(1.0), window(1.0)), 0.99)
    risen = rise_change(steady, (window(1.0), window(1.5)), 0.99)  # the second window's p99 rose by half
    assert not same.significant and same.low < 0 < same.high
    assert risen.significant and risen.low < 0.5 < risen.high and risen.delta > 0.3


# -- --repeat N: one run with N samples --------------------------------------------------------------------


def repeated_doc(seeds, shifts_s=None) -> dict:
    doc = repeated_run(seeds, shifts_s).to_dict()
    return json.loads(json.dumps(doc, default=str))  # as read back from results.json


def test_a_repeated_run_stores_every_repetition_and_compare_uses_all_of_them():
    a, b = repeated_doc([11, 12, 13]), repeated_doc([21, 22, 23])
    assert a["experiments"]["A2"]["samples"] == 3 and len(a["experiments"]["A2"]["repetitions"]) == 2
    rows = {r.what: r for r in compare_runs(a, b)}
    p99 = rows["A2 client p99 (measured)"]
    n_a = sum(p["load"]["latency_ms"]["count"] for e in samples(a["experiments"]["A2"]) for p in e["phases"])
    assert "3 vs 3 repetitions" in p99.test and f"n {n_a:,}" not in p99.test  # n counts the measured part only
    measured = sum(h.n for h in window_histograms([e["phases"][0] for e in samples(a["experiments"]["A2"])])[1])
    assert f"n {measured:,}" in p99.test and measured > 2 * synthetic_measured()
    assert "3 vs 3 repetitions" in rows["A2 answered orders/s"].test
    assert "3 vs 3 repetitions" in rows["A2.p99 (p99 match latency (shard a))"].test
    assert all(r.reading == "~" for r in rows.values() if r.change is not None), [(r.what, r.change) for r in rows.values()]


def synthetic_measured() -> int:
    doc = json.loads(json.dumps(synthetic_run(seed=11).to_dict(), default=str))
    return window_histograms([doc["experiments"]["A2"]["phases"][0]])[1][0].n


def test_two_ms_slower_in_every_repetition_reads_worse_and_old_single_runs_still_compare(runs):
    same, slow = repeated_doc([31, 32, 33]), repeated_doc([41, 42, 43], [0.002] * 3)
    rows = {r.what: r for r in compare_runs(same, slow)}
    for name in ("A2 client p50 (measured)", "A2 client p99 (measured)", "A2.p99 (p99 match latency (shard a))"):
        assert rows[name].reading == "worse" and rows[name].change.low > 0, (name, rows[name].change)
    single = load_results(runs["same1"])  # a results.json of one repetition, as every run before --repeat
    mixed = {r.what: r for r in compare_runs(single, slow)}
    assert mixed["A2 client p99 (measured)"].reading == "worse"
    assert "1 vs 3 repetitions" in mixed["A2 client p99 (measured)"].test


def test_the_two_stage_bootstrap_carries_the_spread_between_repetitions():
    rng = np.random.default_rng(7)

    def hist(shift):
        return Histogram.points(*np.unique(np.round(rng.exponential(1.0, 2000) + shift, 3), return_counts=True))

    steady = [hist(0.0) for _ in range(4)]
    wandering = [hist(s) for s in (-0.4, 0.0, 0.3, 0.6)]  # repetitions that disagree with each other
    within_only = quantile_change(pooled(steady), pooled(wandering), 0.5)
    two_stage = quantile_change(steady, wandering, 0.5)
    assert two_stage.detectable > 2 * within_only.detectable, (two_stage, within_only)
    assert quantile_change(steady, [hist(0.0) for _ in range(4)], 0.5).detectable < within_only.detectable * 1.5


def test_a_criterion_over_repetitions_is_the_worst_and_lists_each():
    crit = registry.build(PROFILES["quick"])["A2.p99"]
    reps = [[judge(crit, 0.010, "q")], [judge(crit, 0.300, "q")], [judge(crit, 0.012, "q")]]
    (v,) = worst_of_repetitions(reps)
    assert v.status is Status.FAIL and v.observed == 0.300
    assert "worst of 3 repetitions (repetition 2)" in v.detail and "1: PASS 10.00 ms" in v.detail
    assert [r["status"] for r in v.evidence["repetitions"]] == ["PASS", "FAIL", "PASS"]
    assert worst_of_repetitions(reps[:1]) == reps[0]  # one repetition: unchanged


@pytest.mark.parametrize(("args", "message"), [
    (["--repeat", "0"], "--repeat N runs each experiment N >= 1 times, got 0"),
    (["--inject-match-delay-ms", "-2"], "--inject-match-delay-ms takes a delay of 0 ms or more, got -2"),
    (["--inject-match-delay-ms", "2", "--backend", "k3d"], "--inject-match-delay-ms applies to the local backend"),
    (["--coupled-events", "--backend", "k3d"], "--coupled-events applies to the local backend"),
    (["--coupled-events", "--reuse-stack"], "--coupled-events needs shards started with it"),
    (["--gateway-workers", "0"], "--gateway-workers N takes 1 to 64 processes, got 0"),
    (["--gateway-workers", "65", "--backend", "k3d"], "--gateway-workers N takes 1 to 64 replicas, got 65"),
    (["--gateway-workers", "2", "--reuse-stack"], "give it to `matchlab up`, not with --reuse-stack"),
])
def test_bad_repeat_or_delay_is_one_usage_line(tmp_path, args, message):
    done = subprocess.run([sys.executable, "-m", "pytest", *args, "--collect-only", "-q", "-p", "no:cacheprovider",
                           str(tmp_path)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 4, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and message in errors[0], done.stderr


def test_a_rise_over_repetitions_keeps_each_repetitions_windows_together():
    rng = np.random.default_rng(9)

    def window(scale):
        return Histogram.points(*np.unique(np.round(rng.exponential(scale, 3000), 4), return_counts=True))

    steady = [(window(1.0), window(1.0)) for _ in range(3)]
    risen = rise_change(steady, [(window(1.0), window(1.5)) for _ in range(3)], 0.99)
    same = rise_change(steady, [(window(1.0), window(1.0)) for _ in range(3)], 0.99)
    assert risen.significant and risen.low < 0.5 < risen.high and "3 vs 3 repetitions" in risen.test
    assert not same.significant


def test_among_passing_repetitions_the_one_nearest_its_bar_stands_for_them():
    crit = registry.build(PROFILES["quick"])["A2.p99"]
    (v,) = worst_of_repetitions([[judge(crit, 0.010, "q")], [judge(crit, 0.030, "q")], [judge(crit, 0.012, "q")]])
    assert v.status is Status.PASS and v.observed == 0.030 and "(repetition 2)" in v.detail
