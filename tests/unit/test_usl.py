"""The USL fit: σ and κ never negative, known parameters recovered, intervals from resampled throughputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from matchlab.experiment.capacity_fit import usl_from_steps
from matchlab.experiment.scaling import Step
from matchlab.observe.usl import UslFit, bootstrap_usl, fit_usl


def test_three_exact_points_give_the_parameters_back():
    truth = UslFit(1000.0, 0.05, 0.01, 3, ())
    fit = fit_usl([(n, truth.throughput(n)) for n in (1, 2, 3)])
    assert fit.lam == pytest.approx(1000) and fit.sigma == pytest.approx(0.05) and fit.kappa == pytest.approx(0.01)
    assert all(abs(r) < 1e-9 for r in fit.residuals) and fit.peak_n == pytest.approx(math.sqrt(0.95 / 0.01))
    assert fit.implied_ratio(3) == pytest.approx(truth.throughput(3) / (3 * truth.throughput(1)))


def test_many_noisy_throughputs_recover_known_sigma_and_kappa():
    rng = np.random.default_rng(5)
    truth = UslFit(800.0, 0.08, 0.02, 0, ())
    points = [(n, truth.throughput(n) * (1 + rng.normal(0, 0.01))) for n in range(1, 7) for _ in range(6)]
    fit = fit_usl(points)
    assert fit.sigma == pytest.approx(0.08, abs=0.02) and fit.kappa == pytest.approx(0.02, abs=0.005)
    assert fit.points == 36 and "residuals within" in fit.describe()


@pytest.mark.parametrize("seed", range(20))
def test_sigma_and_kappa_are_never_negative(seed):
    rng = np.random.default_rng(seed)
    # Superlinear-looking or wildly noisy throughputs: an unconstrained fit gives negative parameters on these.
    points = [(n, 1000 * n * rng.uniform(0.8, 1.3)) for n in (1, 2, 3) for _ in range(3)]
    fit = fit_usl(points)
    assert fit.sigma >= 0 and fit.kappa >= 0 and fit.lam > 0
    intervals = bootstrap_usl({n: [x for k, x in points if k == n] for n in (1, 2, 3)}, 3, resamples=300)
    assert intervals.sigma[0] >= 0 and intervals.kappa[0] >= 0 and 0 < intervals.ratio[0] <= intervals.ratio[1] <= 1


def test_linear_scaling_fits_no_contention_and_no_peak():
    fit = fit_usl([(1, 1000.0), (2, 2000.0), (3, 3000.0)])
    assert fit.sigma == pytest.approx(0, abs=1e-9) and fit.kappa == pytest.approx(0, abs=1e-9)
    assert math.isinf(fit.peak_n) and "no peak" in fit.describe()
    superlinear = fit_usl([(1, 1000.0), (2, 2100.0), (3, 3300.0)])
    assert superlinear.sigma == 0 and superlinear.kappa == 0  # held at the bound, not pushed below it


def test_the_bootstrap_interval_holds_the_truth():
    rng = np.random.default_rng(9)
    truth = UslFit(1000.0, 0.05, 0.0, 0, ())
    by_n = {n: [truth.throughput(n) * (1 + rng.normal(0, 0.02)) for _ in range(5)] for n in (1, 2, 3)}
    intervals = bootstrap_usl(by_n, 3)
    assert intervals.sigma[0] <= 0.05 <= intervals.sigma[1]
    assert intervals.ratio[0] <= truth.throughput(3) / 3000 <= intervals.ratio[1]
    assert "implied X(3) / (3 X(1))" in intervals.describe()


def test_too_few_shard_counts_is_an_error():
    with pytest.raises(ValueError, match="three or more"):
        fit_usl([(1, 100.0), (2, 190.0), (2, 185.0)])


def test_the_usl_reads_only_overloaded_steps():
    def step(n: int, rate: float, through: float, passed: bool) -> Step:
        return Step(rate, passed, 1, 0, 1, 1, shards=n, seconds=10.0, orders={"a": through * 10})

    steps = [step(1, 1200, 1000, False), step(1, 900, 900, True), step(2, 2300, 1900, False),
             step(3, 3300, 2700, False), step(3, 3000, 2900, False)]  # the last failed without falling behind
    usl = usl_from_steps(steps, 3)
    assert usl.throughputs == {1: [1000.0], 2: [1900.0], 3: [2700.0]}
    assert usl.fit.implied_ratio(3) == pytest.approx(0.9, abs=0.01) and "explains" not in usl.describe(3)
    assert "three are needed" in usl_from_steps(steps[:2], 3).why_not
