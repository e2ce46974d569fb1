"""``python -m matchlab.compare``: same system reads ~, +2 ms reads worse, exit codes, incomplete runs refused."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from matchlab.compare.__main__ import comparison_with, main
from matchlab.compare.runs import compare_runs, load_results
from matchlab.compare.stats import Histogram, mann_whitney, quantile_change, rise_change, shift_change
from tests.synthetic_runs import synthetic_run, write_run


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
    assert len(tested) == 4  # client p50 and p99, the rate, the server-side A2.p99
    assert all(r.reading == "~" for r in tested), [(r.what, r.change) for r in tested]
    assert rows["A2.queue (matcher queue near empty)"].reading == "n/a"


def test_two_ms_more_latency_compares_as_worse_with_the_interval_excluding_zero(runs):
    rows = rows_by_name(runs["same1"], runs["slow"])
    for name in ("A2 client p50 (measured)", "A2 client p99 (measured)", "A2.p99 (p99 match latency (shard a))"):
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
