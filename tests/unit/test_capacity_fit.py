"""Capacities from pass/fail steps: the Firth logistic fit, its 50 % point, and the bootstrap over steps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from matchlab.compare.logistic import Curve
from matchlab.experiment.capacity_fit import estimate_capacities, estimate_capacity, fills_per_order, scaling_ratio
from matchlab.experiment.scaling import Step


def steps_from(capacity: float, width: float, n: int, rng: np.random.Generator, key: str = "N=1",
               spread: float = 0.15) -> list[Step]:
    """``n`` steps at rates spread evenly in log rate across capacity +-``spread``, each passing with the
    logistic chance of a knee ``width`` wide (in log rate) centred on ``capacity``."""
    rates = capacity * np.exp(rng.uniform(math.log(1 - spread), math.log(1 + spread), n))
    chance = 1 / (1 + np.exp((np.log(rates) - math.log(capacity)) / width))
    return [Step(float(r), bool(ok), 1.0, 0.0, 1.0, 1.0, config=key) for r, ok in zip(rates, rng.random(n) < chance)]


def test_the_fit_recovers_a_known_50_percent_point():
    rng = np.random.default_rng(3)
    steps = steps_from(1000.0, 0.05, 600, rng, spread=0.3)
    assert Curve(tuple(s.rate for s in steps), tuple(s.passed for s in steps)).capacity() == pytest.approx(1000, rel=0.02)


def test_perfectly_separated_steps_put_the_capacity_between_the_last_pass_and_the_first_fail():
    curve = Curve((900.0, 950.0, 1000.0, 1050.0, 1100.0), (True, True, True, False, False))
    cap = curve.capacity()
    assert 1000 < cap < 1050 and math.isfinite(cap)
    assert curve.probability([800.0])[0] > 0.95 and curve.probability([1200.0])[0] < 0.05  # steep, not a step
    # The penalised slope is finite: the same data with the outcomes of the two middle steps swapped still fits.
    assert 950 < Curve((900.0, 950.0, 1000.0, 1050.0, 1100.0), (True, True, False, True, False)).capacity() < 1100


def test_one_outcome_only_has_no_capacity_but_a_bound():
    est = estimate_capacity("N=3", [Step(r, True, 1, 0, 1, 1, config="N=3") for r in (900.0, 1000.0)], 0.95)
    assert est.estimate is None and est.bound == 1000.0 and "every step passed: above 1,000" in est.describe()
    failed = estimate_capacity("N=1", [Step(r, False, 1, 0, 1, 1, config="N=1") for r in (900.0, 1000.0)], 0.95)
    assert failed.bound == 900.0 and "every step failed" in failed.describe()
    ratio = scaling_ratio(failed, est, 3)
    assert ratio.interval is None and ratio.estimate == pytest.approx(1000 / 2700)


def test_a_resample_with_one_outcome_widens_the_interval_instead_of_vanishing():
    # One failing step among many passes: resamples that miss it put the capacity beyond every rate drawn.
    steps = [Step(r, r < 1100, 1, 0, 1, 1, config="N=1") for r in (800.0, 850.0, 900.0, 950.0, 1000.0, 1050.0, 1100.0)]
    est = estimate_capacity("N=1", steps, 0.95)
    assert est.estimate is not None and math.isinf(est.interval[1])


def test_the_bootstrap_interval_covers_the_true_ratio_about_as_often_as_it_says():
    rng = np.random.default_rng(11)
    truth = 2800 / 3000
    hits, runs, widths = 0, 60, []
    for k in range(runs):
        steps = steps_from(1000.0, 0.03, 14, rng, "N=1") + steps_from(2800.0, 0.03, 14, rng, "N=3")
        caps = estimate_capacities(steps, 0.9, resamples=400, seed=k)
        ratio = scaling_ratio(caps["N=1"], caps["N=3"], 3)
        hits += ratio.interval[0] <= truth <= ratio.interval[1]
        widths.append(ratio.interval[1] - ratio.interval[0])
    # Nominal 90 %; percentile bootstraps of 14 binary steps run a little short (0.83-0.90 in 200-run checks).
    assert 0.75 <= hits / runs <= 0.99, hits / runs
    assert np.median(widths) < 0.2


def test_fills_per_order_come_from_the_shards_counts():
    steps = [Step(100, True, 1, 0, 1, 1, orders={"a": 100, "b": 100}, matches=190),
             Step(100, True, 1, 0, 1, 1, orders={"a": 200}, matches=200)]
    assert fills_per_order(steps) == pytest.approx(390 / 400)
    assert fills_per_order([]) is None
