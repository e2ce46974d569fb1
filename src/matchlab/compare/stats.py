"""The statistics of a comparison: bootstrap intervals for quantiles, Hodges-Lehmann / Mann-Whitney for rates.

Latency quantiles are compared from the stored histograms (a client
HdrHistogram, or a server's bucket vector): each run's histogram is
resampled (a multinomial draw of its n samples over its cells, which is the
ordinary bootstrap of n latencies), the quantile computed from every
resample, and the change B - A taken over independent resamples of the two
runs; its 95 % interval is the 2.5th-97.5th percentile (the percentile
bootstrap of a quantile runs a little short of 95 %: 90-93 % measured for
a median of 1,000-3,000 samples). Per-second rates
are compared with the Mann-Whitney U test (normal approximation with the tie
correction) and the Hodges-Lehmann shift, whose interval comes from the same
U distribution, so the interval excludes 0 exactly when the test rejects.

"Detectable" is the interval's half-width: a true change smaller than that
would usually read as no significant difference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BOOTSTRAP_RESAMPLES = 1000
SEED = 15  # fixed: the same two runs always give the same table
Z_95 = 1.959964
ALPHA = 0.05


@dataclass(frozen=True)
class Change:
    """B - A with its 95 % interval, the test that gave it, and the smallest change the data could detect."""

    a: float
    b: float
    delta: float  # B - A for quantiles; the Hodges-Lehmann shift for rates
    low: float
    high: float
    test: str

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0

    @property
    def detectable(self) -> float:
        return (self.high - self.low) / 2

    @property
    def relative(self) -> float | None:
        return self.delta / abs(self.a) if self.a else None


@dataclass(frozen=True)
class Histogram:
    """A distribution as cells: each cell's lower and upper edge and its count (point cells: lower == upper)."""

    lower: np.ndarray
    upper: np.ndarray
    counts: np.ndarray

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    @classmethod
    def points(cls, values: Sequence[float], counts: Sequence[float]) -> Histogram:
        v = np.asarray(values, dtype=float)
        return cls(v, v, np.asarray(counts, dtype=float))

    @classmethod
    def from_cumulative(cls, bounds: Sequence[float], cumulative: Sequence[float]) -> Histogram:
        """Prometheus buckets; the +Inf bucket is a point at its lower edge (the best bound there is)."""
        upper = np.asarray(bounds, dtype=float)
        lower = np.concatenate([[0.0], upper[:-1]])
        upper = np.where(np.isinf(upper), lower, upper)
        counts = np.diff(np.concatenate([[0.0], np.asarray(cumulative, dtype=float)]))
        return cls(lower, upper, np.maximum(counts, 0.0).round())


def values_at_ranks(hist: Histogram, ranks: np.ndarray) -> np.ndarray:
    """The value at each rank (1..n), interpolated within a cell as histogram_quantile does."""
    cum = hist.counts.cumsum()
    idx = np.minimum(np.searchsorted(cum, ranks, side="left"), len(cum) - 1)
    below = np.where(idx > 0, cum[np.maximum(idx - 1, 0)], 0.0)
    inside = hist.counts[idx]
    frac = np.where(inside > 0, (ranks - below) / np.where(inside > 0, inside, 1.0), 1.0)
    return hist.lower[idx] + (hist.upper[idx] - hist.lower[idx]) * np.clip(frac, 0.0, 1.0)


def point_quantile(hist: Histogram, q: float) -> float:
    return float(values_at_ranks(hist, np.array([q * hist.n]))[0])


def resampled_quantiles(hist: Histogram, q: float, rng: np.random.Generator) -> np.ndarray:
    """The q-quantile of each of many bootstrap resamples, drawn directly.

    In a resample of n values the k-th smallest lies at the k-th order statistic
    of n uniforms on the original distribution's CDF, and that order statistic is
    Beta(k, n - k + 1): one Beta draw per resample replaces drawing n values.
    """
    n = hist.n
    k = min(n, max(1, math.ceil(q * n)))
    return values_at_ranks(hist, rng.beta(k, n - k + 1, size=BOOTSTRAP_RESAMPLES) * n)


def quantile_change(a: Histogram, b: Histogram, q: float) -> Change | None:
    """B's q-quantile minus A's, with a bootstrap 95 % interval; None when either is empty."""
    if a.n <= 0 or b.n <= 0:
        return None
    rng = np.random.default_rng(SEED)
    qa, qb = resampled_quantiles(a, q, rng), resampled_quantiles(b, q, rng)
    low, high = np.percentile(qb - qa, [2.5, 97.5])
    point_a, point_b = point_quantile(a, q), point_quantile(b, q)
    return Change(point_a, point_b, point_b - point_a, float(low), float(high),
                  f"bootstrap of p{q * 100:g} ({BOOTSTRAP_RESAMPLES} resamples; n {a.n:,} vs {b.n:,})")


def rise_change(a: tuple[Histogram, Histogram], b: tuple[Histogram, Histogram], q: float) -> Change | None:
    """A rise (other window's quantile over the base window's, minus 1) in B against the same in A."""
    if min(h.n for h in (*a, *b)) <= 0:
        return None
    rng = np.random.default_rng(SEED)

    def rises(pair: tuple[Histogram, Histogram]) -> np.ndarray:
        base, other = resampled_quantiles(pair[0], q, rng), resampled_quantiles(pair[1], q, rng)
        return other / np.where(base > 0, base, np.nan) - 1

    def point(pair: tuple[Histogram, Histogram]) -> float:
        base, other = (point_quantile(h, q) for h in pair)
        return other / base - 1 if base > 0 else math.nan

    diff = rises(b) - rises(a)
    low, high = np.nanpercentile(diff, [2.5, 97.5])
    pa, pb = point(a), point(b)
    return Change(pa, pb, pb - pa, float(low), float(high),
                  f"bootstrap of the p{q * 100:g} rise ({BOOTSTRAP_RESAMPLES} resamples of both windows)")


def mann_whitney(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """(U of B over A, two-sided p-value): normal approximation with the tie correction."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n1, n2 = len(x), len(y)
    both = np.concatenate([x, y])
    order = both.argsort(kind="mergesort")
    ranks = np.empty(len(both))
    ranks[order] = np.arange(1, len(both) + 1)
    _, inverse, ties = np.unique(both, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = (sums / ties)[inverse]  # average ranks within ties
    u = ranks[n1:].sum() - n2 * (n2 + 1) / 2
    n = n1 + n2
    var = n1 * n2 / 12 * ((n + 1) - (ties ** 3 - ties).sum() / (n * (n - 1)))
    if var <= 0:
        return float(u), 1.0
    z = (u - n1 * n2 / 2) / math.sqrt(var)
    return float(u), math.erfc(abs(z) / math.sqrt(2))


def shift_change(a: Sequence[float], b: Sequence[float], min_n: int = 5) -> Change | None:
    """Per-second rates: the Hodges-Lehmann shift (median of all B - A differences), its 95 % interval from the
    Mann-Whitney distribution, and the test's p-value in the test text. None with fewer than ``min_n`` each."""
    if len(a) < min_n or len(b) < min_n:
        return None
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diffs = np.sort(np.subtract.outer(y, x).ravel())
    m = len(diffs)
    k = math.floor(m / 2 - Z_95 * math.sqrt(len(x) * len(y) * (len(x) + len(y) + 1) / 12))
    k = max(k, 0)
    shift = float(np.median(diffs))
    _, p = mann_whitney(x, y)
    return Change(float(np.median(x)), float(np.median(y)), shift, float(diffs[k]), float(diffs[m - 1 - k]),
                  f"Mann-Whitney U, p={p:.2g} (Hodges-Lehmann shift; {len(x)} vs {len(y)} seconds)")
