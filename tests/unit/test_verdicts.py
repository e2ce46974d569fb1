"""Verdict rules on recorded series: pass, fail, no data, borderline (DESIGN.md §6)."""

from __future__ import annotations

import math

import pytest

from matchlab.observe.verdicts import (
    Criterion,
    Role,
    Status,
    Verdict,
    asr1_status,
    asr2_status,
    judge,
    mann_kendall,
    monotonic_growth,
    quantile_band,
    relative_change_ok,
    smallest_detectable_rise,
    sustained,
)


def crit(asr: str, role: Role, comparison: str = "<", threshold: float = 0.2, name: str = "c") -> Criterion:
    return Criterion(asr, "X", name, role, comparison, threshold, "s")


def test_judge_pass_fail_and_borderline():
    c = crit("ASR 1", Role.PRIMARY, "<", 0.2)
    assert judge(c, 0.199, "q").passed
    assert not judge(c, 0.2, "q").passed  # "< 200 ms" is strict: exactly 200 ms fails
    assert not judge(c, 0.5, "q").passed
    assert judge(crit("ASR 2", Role.PRIMARY, ">=", 4750), 4750.0, "q").passed  # ">=" includes the bar


@pytest.mark.parametrize("observed", [None, math.nan])
def test_no_data_is_a_failure_naming_the_query(observed):
    v = judge(crit("ASR 1", Role.PRIMARY), observed, 'histogram_quantile(0.99, x{shard="a"})')
    assert not v.passed and v.observed is None
    assert "no data" in v.message() and 'x{shard="a"}' in v.message()


def test_relative_change_with_resolution_tolerance():
    assert relative_change_ok(0.010, 0.0109, 0.10, 0.0005)[1]  # +9 %
    assert not relative_change_ok(0.010, 0.0112, 0.10, 0.0)[1]  # +12 %, no tolerance
    assert relative_change_ok(0.001, 0.0014, 0.10, 0.0005)[1]  # +40 % but within 0.5 ms resolution
    assert not relative_change_ok(0.001, 0.0030, 0.10, 0.0005)[1]
    assert relative_change_ok(None, 0.001, 0.1, 0.0005) == (None, False)


def test_sustained_counts_the_longest_stretch_and_the_longest_dip():
    step = 5.0
    good = [(t * step, 5000.0) for t in range(60)]  # 5 min at 5,000/min
    r = sustained(good, 4750, step)
    assert r.longest_above_s == 300 and r.longest_below_s == 0
    dipped = good[:20] + [(t * step, 4000.0) for t in range(20, 27)] + good[27:]  # a 35 s dip
    r = sustained(dipped, 4750, step)
    assert r.longest_below_s == 35 and r.longest_above_s == 165 and r.minimum == 4000
    borderline = [(t * step, 4750.0) for t in range(48)]  # exactly at the bar for 4 min
    assert sustained(borderline, 4750, step).longest_above_s == 240
    assert sustained([], 4750, step).minimum is None


def test_a_gap_in_the_series_ends_a_stretch():
    pts = [(0.0, 5000.0), (5.0, 5000.0), (60.0, 5000.0), (65.0, 5000.0)]  # scrape gap of 55 s
    assert sustained(pts, 4750, 5.0).longest_above_s == 10


def test_mann_kendall_detects_trends_not_noise():
    rising = [100 + i for i in range(30)]
    s, p = mann_kendall(rising)
    assert s > 0 and p < 0.001
    flat = [100, 101, 100, 99, 100, 101, 100, 99] * 4
    assert mann_kendall(flat)[1] > 0.05


def test_monotonic_growth_needs_significance_and_size():
    assert monotonic_growth([100e6 * (1 + 0.01 * i) for i in range(40)])[0]  # +39 %, steady
    assert not monotonic_growth([100e6 + i for i in range(40)])[0]  # significant but tiny
    assert not monotonic_growth([100e6, 130e6, 100e6, 131e6, 99e6, 130e6] * 5)[0]  # noisy, no trend
    assert not monotonic_growth([1.0, 2.0])[0]  # too few samples to claim growth


def v(asr: str, role: Role, passed: bool, name: str = "c") -> Verdict:
    return Verdict(crit(asr, role, name=name), 0.1 if passed else 0.3, passed, "q")


def test_asr1_status_rules():
    ok = [v("ASR 1", Role.PRIMARY, True), v("ASR 1", Role.ERROR_RATE, True), v("ASR 1", Role.SECONDARY, True),
          v("ASR 1", Role.DECOUPLING, True)]
    assert asr1_status(ok).status is Status.PASS
    decoupling_fails = ok[:3] + [v("ASR 1", Role.DECOUPLING, False)]
    assert asr1_status(decoupling_fails).status is Status.CONDITIONAL_PASS
    secondary_fails = [ok[0], ok[1], v("ASR 1", Role.SECONDARY, False), ok[3]]
    assert asr1_status(secondary_fails).status is Status.CONDITIONAL_PASS
    primary_fails = [v("ASR 1", Role.PRIMARY, False)] + ok[1:]
    out = asr1_status(primary_fails)
    assert out.status is Status.FAIL and "failed" in out.reason
    errors = [ok[0], v("ASR 1", Role.ERROR_RATE, False)] + ok[2:]
    assert asr1_status(errors).status is Status.FAIL
    assert asr1_status([]).status is Status.FAIL  # nothing evaluated is never a pass
    no_data = [Verdict(crit("ASR 1", Role.PRIMARY), None, False, "q", "no data")] + ok[1:]
    assert asr1_status(no_data).status is Status.FAIL


def test_asr2_status_rules():
    base = [v("ASR 2", Role.PRIMARY, True), v("ASR 2", Role.SCALING, True), v("ASR 2", Role.PEAK_LATENCY, True),
            v("ASR 2", Role.ERROR_RATE, True)]
    extras = [v("ASR 2", Role.ISOLATION, True), v("ASR 2", Role.MEMORY, True)]
    assert asr2_status(base + extras).status is Status.PASS
    assert asr2_status(base + [v("ASR 2", Role.ISOLATION, False), extras[1]]).status is Status.CONDITIONAL_PASS
    assert asr2_status([v("ASR 2", Role.PRIMARY, False)] + base[1:] + extras).status is Status.FAIL
    assert asr2_status([base[0], v("ASR 2", Role.SCALING, False)] + base[2:] + extras).status is Status.FAIL
    # ASR 1 verdicts never decide ASR 2
    assert asr2_status([v("ASR 1", Role.PRIMARY, True)]).status is Status.FAIL


def test_quantile_band_is_the_order_statistic_interval():
    lo, hi = quantile_band(0.99, 1500)  # 2 standard errors of the rank: sqrt(.99 * .01 / 1500) = 0.00257
    assert math.isclose(lo, 0.99 - 0.005138, abs_tol=1e-5) and math.isclose(hi, 0.99 + 0.005138, abs_tol=1e-5)
    lo, hi = quantile_band(0.99, 1_000_000)  # plenty of samples: the band closes in on p99
    assert 0.9898 < lo < 0.99 < hi < 0.9902
    assert quantile_band(0.99, 10)[1] == 0.9999  # capped below 1 (histogram_quantile(1) is the top bucket bound)
    assert quantile_band(0.99, 0) == (0.0, 0.9999)  # no samples: anything goes, the p99 itself is then no data


def test_smallest_detectable_rise_grows_with_the_bands():
    # Tight bands (many samples): a rise a little over 10 % already shows.
    tight = smallest_detectable_rise(0.010, 0.0102, 0.010, 0.0098, 0.10, 0.0005)
    assert 0.10 < tight < 0.20
    # One slow outlier at the top of a 500-order baseline: only a tail many times larger would show.
    loose = smallest_detectable_rise(0.00466, 0.07456, 0.0038, 0.00276, 0.10, 0.0005)
    assert loose > 20
    # Sub-millisecond p99s: the 0.5 ms resolution, not the 10 %, sets the bar.
    assert smallest_detectable_rise(0.001, 0.001, 0.001, 0.001, 0.10, 0.0005) == pytest.approx(0.5)
    assert smallest_detectable_rise(None, 0.001, 0.001, 0.001, 0.10, 0.0005) is None
