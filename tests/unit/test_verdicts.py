"""Verdict rules on recorded series: pass, fail, no data, inconclusive, ASR statuses (docs/internals/design.md §6)."""

from __future__ import annotations

import math

import pytest

from matchlab.experiment.profiles import FULL, QUICK
from matchlab.experiment.registry import ASR1, ASR2, RULES, expected
from matchlab.observe.verdicts import (
    DURATION,
    LATENCY,
    RATIO,
    Criterion,
    Role,
    Status,
    Verdict,
    asr_status,
    judge,
    mann_kendall,
    monotonic_growth,
    render,
    runs,
    sustained,
)


def crit(asr: str, role: Role, comparison: str = "<", threshold: float = 0.2, name: str = "c") -> Criterion:
    return Criterion(f"X.{name}", asr, "X", name, role, comparison, threshold, LATENCY)


def test_judge_pass_fail_and_borderline():
    c = crit("ASR 1", Role.PRIMARY, "<", 0.2)
    assert judge(c, 0.199, "q").passed
    assert not judge(c, 0.2, "q").passed  # "< 200 ms" is strict: exactly 200 ms fails
    assert judge(c, 0.5, "q").status is Status.FAIL
    assert judge(crit("ASR 2", Role.PRIMARY, ">=", 4750), 4750.0, "q").passed  # ">=" includes the bar


@pytest.mark.parametrize("observed", [None, math.nan])
def test_no_data_is_a_failure_naming_the_query(observed):
    v = judge(crit("ASR 1", Role.PRIMARY), observed, 'histogram_quantile(0.99, x{shard="a"})')
    assert v.status is Status.FAIL and v.no_data
    assert "no data" in v.message() and 'x{shard="a"}' in v.message()


def test_sustained_counts_the_longest_stretch_and_the_longest_dip():
    step = 5.0
    good = [(t * step, 5000.0) for t in range(60)]  # 5 min at 5,000/min
    r = sustained(good, 4750, step)
    assert r.longest_above_s == 295 and r.longest_below_s == 0  # 60 points span 59 steps
    dipped = good[:20] + [(t * step, 4000.0) for t in range(20, 27)] + good[27:]  # 7 points below: a 35 s dip
    r = sustained(dipped, 4750, step)
    assert r.longest_below_s == 35 and r.longest_above_s == 160 and r.minimum == 4000
    borderline = [(t * step, 4750.0) for t in range(49)]  # exactly at the bar, 49 points = 4 min
    assert sustained(borderline, 4750, step).longest_above_s == 240
    assert runs([(0.0, 1.0)], lambda v: v > 0, step) == [(True, 0.0)]
    assert sustained([], 4750, step).minimum is None


def test_a_gap_in_the_series_ends_a_stretch():
    pts = [(0.0, 5000.0), (5.0, 5000.0), (60.0, 5000.0), (65.0, 5000.0)]  # scrape gap of 55 s
    assert sustained(pts, 4750, 5.0).longest_above_s == 5


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


def verdicts_for(asr: str, profile=FULL, status: Status = Status.PASS, **override: Status) -> list[Verdict]:
    """One verdict per expected criterion of ``asr``; ``override`` sets some by id (dots as "__")."""
    out = []
    for c in expected(profile, asr):
        st = override.get(c.id.replace(".", "__"), status)
        out.append(Verdict(c, None if st is Status.INCONCLUSIVE else 0.1, st, "q"))
    return out


def test_every_expected_criterion_passing_is_a_pass_and_the_profile_caps_it():
    for asr in (ASR1, ASR2):
        assert asr_status(RULES[asr], verdicts_for(asr), expected(FULL, asr)).label == "PASS"
        quick = asr_status(RULES[asr], verdicts_for(asr, QUICK), expected(QUICK, asr), "quick")
        assert quick.status is Status.PASS and quick.label == "PASS (quick)"


def test_asr1_rules():
    ex = expected(FULL, ASR1)
    rule = RULES[ASR1]
    assert asr_status(rule, verdicts_for(ASR1, A2__p99=Status.FAIL), ex).status is Status.FAIL
    assert asr_status(rule, verdicts_for(ASR1, A2__error_rate=Status.FAIL), ex).status is Status.FAIL
    # docs/internals/design.md §6: PASS needs decoupling; its failure is a FAIL, not a conditional pass.
    assert asr_status(rule, verdicts_for(ASR1, A4__decoupling=Status.FAIL), ex).status is Status.FAIL
    assert asr_status(rule, verdicts_for(ASR1, A4__outage_orders=Status.FAIL), ex).status is Status.FAIL
    out = asr_status(rule, verdicts_for(ASR1, A2__p99_secondary=Status.FAIL), ex)
    assert out.status is Status.CONDITIONAL_PASS and "secondary bar" in out.reason
    undecided = asr_status(rule, verdicts_for(ASR1, A4__decoupling=Status.INCONCLUSIVE), ex)
    assert undecided.status is Status.INCONCLUSIVE and "p99 rise during the broker outage" in undecided.reason
    drained = asr_status(rule, verdicts_for(ASR1, A2__depth=Status.FAIL), ex)
    assert drained.status is Status.INCONCLUSIVE and "preconditions" in drained.reason


def test_an_absent_experiment_or_criterion_is_never_a_pass():
    ex = expected(FULL, ASR1)
    without_a4 = [v for v in verdicts_for(ASR1) if v.criterion.experiment != "A4"]
    out = asr_status(RULES[ASR1], without_a4, ex)
    assert out.status is Status.INCONCLUSIVE and "not evaluated" in out.reason
    without_a3 = [v for v in verdicts_for(ASR1) if v.criterion.experiment != "A3"]
    assert asr_status(RULES[ASR1], without_a3, ex).status is Status.INCONCLUSIVE
    only_primary = [v for v in verdicts_for(ASR1) if v.criterion.role is Role.PRIMARY]
    assert asr_status(RULES[ASR1], only_primary, ex).status is Status.INCONCLUSIVE
    assert asr_status(RULES[ASR1], [], ex).status is Status.INCONCLUSIVE


def test_asr2_rules():
    ex = expected(FULL, ASR2)
    rule = RULES[ASR2]
    assert asr_status(rule, verdicts_for(ASR2, B2__sustained=Status.FAIL), ex).status is Status.FAIL
    assert asr_status(rule, verdicts_for(ASR2, B2__p99__b=Status.FAIL), ex).status is Status.FAIL
    assert asr_status(rule, verdicts_for(ASR2, S1__scaling=Status.INCONCLUSIVE), ex).status is Status.INCONCLUSIVE
    assert asr_status(rule, verdicts_for(ASR2, B5__isolation=Status.FAIL), ex).status is Status.CONDITIONAL_PASS
    assert asr_status(rule, verdicts_for(ASR2, B3__memory__a=Status.FAIL), ex).status is Status.CONDITIONAL_PASS
    # An isolation verdict without the power to decide leaves the ASR undecided, not passed.
    assert asr_status(rule, verdicts_for(ASR2, B5__isolation=Status.INCONCLUSIVE), ex).status is Status.INCONCLUSIVE
    assert asr_status(rule, verdicts_for(ASR2, B5__b_load=Status.FAIL), ex).status is Status.INCONCLUSIVE
    # ASR 1 verdicts never decide ASR 2
    assert asr_status(rule, verdicts_for(ASR1), ex).status is Status.INCONCLUSIVE


def test_rendering_uses_natural_units():
    assert render(0.0123, LATENCY) == "12.30 ms"
    assert render(65.0, DURATION) == "65 s"
    assert render(0.012, RATIO) == "1.2 %"
    assert render(-0.05, RATIO) == "-5.0 %"
    assert render(None, LATENCY) == "no data"
    b2 = next(c for c in expected(QUICK, ASR2) if c.id == "B2.sustained")
    v = judge(b2, 65.0, "q")
    assert "observed 65 s" in v.message() and ">= 60 s" in v.message()
