"""The USL fit recovers known parameters and says where adding shards stops helping."""

from __future__ import annotations

import math

import pytest

from matchlab.observe.usl import UslFit, fit_usl


def test_three_points_determine_the_parameters_exactly():
    truth = UslFit(1000.0, 0.05, 0.01, 3, ())
    fit = fit_usl([(n, truth.throughput(n)) for n in (1, 2, 3)])
    assert fit.lam == pytest.approx(1000) and fit.sigma == pytest.approx(0.05) and fit.kappa == pytest.approx(0.01)
    assert fit.exact and all(abs(r) < 1e-9 for r in fit.residuals)
    assert fit.peak_n == pytest.approx(math.sqrt(0.95 / 0.01))


def test_linear_scaling_fits_no_contention_and_no_peak():
    fit = fit_usl([(1, 1000.0), (2, 2000.0), (3, 3000.0)])
    assert fit.sigma == pytest.approx(0, abs=1e-9) and fit.kappa == pytest.approx(0, abs=1e-9)
    assert math.isinf(fit.peak_n) and "no peak" in fit.describe()


def test_more_points_are_least_squares_with_residuals():
    truth = UslFit(800.0, 0.1, 0.02, 6, ())
    noisy = [(n, truth.throughput(n) * (1 + (0.02 if n % 2 else -0.02))) for n in range(1, 7)]
    fit = fit_usl(noisy)
    assert not fit.exact and len(fit.residuals) == 6 and max(abs(r) for r in fit.residuals) < 0.05
    assert fit.sigma == pytest.approx(0.1, abs=0.05) and "least squares over 6 points" in fit.describe()


def test_too_few_shard_counts_is_an_error():
    with pytest.raises(ValueError, match="three or more"):
        fit_usl([(1, 100.0), (2, 190.0), (2, 185.0)])
