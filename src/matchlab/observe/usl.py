"""The Universal Scalability Law fitted to capacities: why adding shards helps less than linearly.

Gunther's model: X(N) = λN / (1 + σ(N-1) + κN(N-1)), with λ the capacity of
one unit, σ contention (the serial fraction: a shared resource everyone
queues for) and κ coherency (the cost of units agreeing with each other,
growing with every pair). Three capacities determine the three parameters
exactly; more points are fitted by least squares on the linearised form
N/X(N) = 1/λ (1 + σ(N-1) + κN(N-1)), and the residuals are reported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class UslFit:
    lam: float  # capacity of one unit
    sigma: float  # contention
    kappa: float  # coherency
    points: int
    residuals: tuple[float, ...]  # relative: (fitted - measured) / measured, per point

    def throughput(self, n: float) -> float:
        return self.lam * n / (1 + self.sigma * (n - 1) + self.kappa * n * (n - 1))

    @property
    def peak_n(self) -> float:
        """Where adding units stops helping: sqrt((1 - σ) / κ); infinite without coherency cost."""
        if self.kappa <= 0:
            return math.inf
        return math.sqrt(max(0.0, 1 - self.sigma) / self.kappa)

    @property
    def exact(self) -> bool:
        return self.points == 3

    def describe(self) -> str:
        peak = "no peak (no coherency cost)" if math.isinf(self.peak_n) else f"peak at N = {self.peak_n:.1f}"
        how = "three points determine the three parameters exactly" if self.exact else (
            f"least squares over {self.points} points, residuals "
            + ", ".join(f"{r:+.1%}" for r in self.residuals))
        return f"USL: lambda {self.lam:,.1f}, sigma {self.sigma:.3f}, kappa {self.kappa:.4f}, {peak} ({how})"


def _solve3(a: list[list[float]], b: list[float]) -> list[float]:
    """Gaussian elimination for the 3x3 normal equations (no numpy needed for three unknowns)."""
    m = [row[:] + [v] for row, v in zip(a, b)]
    for col in range(3):
        pivot = max(range(col, 3), key=lambda r: abs(m[r][col]))
        if abs(m[pivot][col]) < 1e-12:
            raise ValueError("the capacities do not determine a USL fit (need three distinct N)")
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(3):
            if r != col:
                f = m[r][col] / m[col][col]
                m[r] = [x - f * y for x, y in zip(m[r], m[col])]
    return [m[i][3] / m[i][i] for i in range(3)]


def fit_usl(points: Sequence[tuple[int, float]]) -> UslFit:
    """Fit λ, σ, κ to (N, capacity) points; N must take at least three distinct values."""
    pts = sorted((int(n), float(x)) for n, x in points)
    if len({n for n, _ in pts}) < 3 or any(x <= 0 for _, x in pts):
        raise ValueError(f"a USL fit needs positive capacities at three or more shard counts, got {pts}")
    # N/X = a + b(N-1) + c N(N-1), with a = 1/λ, b = σ/λ, c = κ/λ: linear in (a, b, c).
    rows = [(1.0, n - 1.0, n * (n - 1.0)) for n, _ in pts]
    ys = [n / x for n, x in pts]
    ata = [[sum(r[i] * r[j] for r in rows) for j in range(3)] for i in range(3)]
    aty = [sum(r[i] * y for r, y in zip(rows, ys)) for i in range(3)]
    a, b, c = _solve3(ata, aty)
    lam = 1 / a
    fit = UslFit(lam, b * lam, c * lam, len(pts), ())
    residuals = tuple((fit.throughput(n) - x) / x for n, x in pts)
    return UslFit(fit.lam, fit.sigma, fit.kappa, len(pts), residuals)
