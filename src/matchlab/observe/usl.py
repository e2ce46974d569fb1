"""The Universal Scalability Law fitted to throughputs: why adding shards helps less than linearly.

Gunther's model: X(N) = λN / (1 + σ(N-1) + κN(N-1)), with λ the throughput
of one unit, σ contention (the serial fraction: a shared resource everyone
queues for) and κ coherency (the cost of units agreeing with each other,
growing with every pair). Both are costs, so both are >= 0.

The fit takes every measurement of a configuration's top throughput (each
overloaded step is one) and solves the linearised form
N/X = a + b(N-1) + cN(N-1) (a = 1/λ, b = σ/λ, c = κ/λ) by least squares with
b, c >= 0, each row divided by its own N/X so that residuals are relative.
With b and c held non-negative the fit never reports a negative contention;
the constrained optimum is the best of the unconstrained fits over the
subsets of {b, c} left free (the KKT conditions of a three-variable
non-negative least squares). ``bootstrap_usl`` resamples the measurements
within each N for intervals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000
SEED = 34  # fixed: the same steps always give the same intervals
_FREE = ((0,), (0, 1), (0, 2), (0, 1, 2))  # which of (a, b, c) each candidate leaves free; the rest are 0


@dataclass(frozen=True)
class UslFit:
    lam: float  # throughput of one unit
    sigma: float  # contention
    kappa: float  # coherency
    points: int
    residuals: tuple[float, ...]  # relative: (fitted - measured) / measured, per point

    def throughput(self, n: float) -> float:
        return self.lam * n / (1 + self.sigma * (n - 1) + self.kappa * n * (n - 1))

    def implied_ratio(self, n: int) -> float:
        """X(n) / (n X(1)): the share of linear scaling the model gives n units."""
        return 1 / (1 + self.sigma * (n - 1) + self.kappa * n * (n - 1))

    @property
    def peak_n(self) -> float:
        """Where adding units stops helping: sqrt((1 - σ) / κ); infinite without coherency cost."""
        if self.kappa <= 0:
            return math.inf
        return math.sqrt(max(0.0, 1 - self.sigma) / self.kappa)

    def describe(self) -> str:
        peak = "no peak (no coherency cost)" if math.isinf(self.peak_n) else f"peak at N = {self.peak_n:.1f}"
        worst = max((abs(r) for r in self.residuals), default=0.0)
        return (f"USL: lambda {self.lam:,.1f}, sigma {self.sigma:.3f}, kappa {self.kappa:.4f}, {peak} (least squares "
                f"with sigma, kappa >= 0 over {self.points} throughputs, residuals within {worst:.1%})")


def _design(ns: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the linearised form, each divided by its own N/X (so residuals are relative), and the targets."""
    y = ns / xs
    rows = np.stack([np.ones_like(ns), ns - 1.0, ns * (ns - 1.0)], -1) / y[:, None]
    return rows, np.ones_like(ns)


def _solve(rows: np.ndarray, target: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(a, b, c) with b, c >= 0 minimising the weighted squared residuals, one row per row of ``weights``."""
    ata = np.einsum("bn,ni,nj->bij", weights, rows, rows)
    aty = np.einsum("bn,ni,n->bi", weights, rows, target)
    tt = weights @ (target * target)
    best = np.full((len(weights), 3), np.nan)
    best_sse = np.full(len(weights), np.inf)
    for free in _FREE:
        idx = list(free)
        coef = np.zeros((len(weights), 3))
        # pinv: a resample that drew one N only leaves its system singular; the minimum-norm answer is then checked
        coef[:, idx] = np.einsum("bij,bj->bi", np.linalg.pinv(ata[:, idx][:, :, idx]), aty[:, idx])
        feasible = (coef[:, 0] > 0) & (coef[:, 1] >= 0) & (coef[:, 2] >= 0)
        sse = tt - 2 * np.einsum("bi,bi->b", coef, aty) + np.einsum("bi,bij,bj->b", coef, ata, coef)
        better = feasible & (sse < best_sse - 1e-15)
        best[better], best_sse[better] = coef[better], sse[better]
    return best


def _check(points: Sequence[tuple[int, float]]) -> tuple[np.ndarray, np.ndarray]:
    pts = sorted((int(n), float(x)) for n, x in points)
    if len({n for n, _ in pts}) < 3 or any(x <= 0 or n < 1 for n, x in pts):
        raise ValueError(f"a USL fit needs positive throughputs at three or more shard counts, got {pts}")
    return np.asarray([n for n, _ in pts], dtype=float), np.asarray([x for _, x in pts])


def fit_usl(points: Sequence[tuple[int, float]]) -> UslFit:
    """Fit λ, σ >= 0, κ >= 0 to (N, throughput) points; N must take at least three distinct values."""
    ns, xs = _check(points)
    rows, target = _design(ns, xs)
    a, b, c = (float(v) for v in _solve(rows, target, np.ones((1, len(ns))))[0])
    lam = 1 / a
    fit = UslFit(lam, b * lam, c * lam, len(ns), ())
    residuals = tuple(float((fit.throughput(n) - x) / x) for n, x in zip(ns, xs))
    return UslFit(fit.lam, fit.sigma, fit.kappa, len(ns), residuals)


@dataclass(frozen=True)
class UslIntervals:
    """Percentile bootstrap intervals of the fit's parameters and of the ratio it implies."""

    level: float
    lam: tuple[float, float]
    sigma: tuple[float, float]
    kappa: tuple[float, float]
    ratio: tuple[float, float]  # implied X(n) / (n X(1)) at ``n``
    n: int
    draws: dict[str, np.ndarray]  # every resample's lam, sigma, kappa (for what is computed from them)

    def describe(self) -> str:
        return (f"{self.level:.0%} intervals: sigma [{self.sigma[0]:.3f}, {self.sigma[1]:.3f}], kappa "
                f"[{self.kappa[0]:.4f}, {self.kappa[1]:.4f}], implied X({self.n}) / ({self.n} X(1)) "
                f"[{self.ratio[0]:.3f}, {self.ratio[1]:.3f}]")


def bootstrap_usl(by_n: Mapping[int, Sequence[float]], n: int, level: float = 0.95, resamples: int = RESAMPLES,
                  seed: int = SEED) -> UslIntervals:
    """Refit after resampling the throughputs within each N (each N keeps its count of measurements)."""
    points = [(k, x) for k, xs in by_n.items() for x in xs]
    ns, xs = _check(points)
    rows, target = _design(ns, xs)
    rng = np.random.default_rng(seed)
    weights = np.zeros((resamples, len(ns)))
    for k in sorted(set(ns)):
        idx = np.flatnonzero(ns == k)
        weights[:, idx] = rng.multinomial(len(idx), np.full(len(idx), 1.0 / len(idx)), size=resamples)
    coef = _solve(rows, target, weights)
    coef = coef[np.isfinite(coef).all(1)]
    lam = 1 / coef[:, 0]
    draws = {"lam": lam, "sigma": coef[:, 1] * lam, "kappa": coef[:, 2] * lam}
    ratio = 1 / (1 + draws["sigma"] * (n - 1) + draws["kappa"] * n * (n - 1))
    tail = 100 * (1 - level) / 2

    def interval(values: np.ndarray) -> tuple[float, float]:
        low, high = np.percentile(values, [tail, 100 - tail])
        return float(low), float(high)

    return UslIntervals(level, interval(draws["lam"]), interval(draws["sigma"]), interval(draws["kappa"]),
                        interval(ratio), n, draws)
