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

A run of ``--repeat N`` holds N histograms of each figure. Its quantile is the
pooled one (all repetitions' samples together), and its bootstrap resamples in
two stages: the N repetitions with replacement, then the samples of the pooled
draw, so the interval carries the spread between repetitions (a slow
repetition is not averaged away into a falsely narrow interval) as well as
within them. A run of one repetition resamples as before.

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


def resampled_quantiles(hist: Histogram, q: float, rng: np.random.Generator,
                        size: int = BOOTSTRAP_RESAMPLES) -> np.ndarray:
    """The q-quantile of each of many bootstrap resamples, drawn directly.

    In a resample of n values the k-th smallest lies at the k-th order statistic
    of n uniforms on the original distribution's CDF, and that order statistic is
    Beta(k, n - k + 1): one Beta draw per resample replaces drawing n values.
    """
    n = hist.n
    if n <= 0:
        return np.full(size, np.nan)
    k = min(n, max(1, math.ceil(q * n)))
    return values_at_ranks(hist, rng.beta(k, n - k + 1, size=size) * n)


def pooled(hists: Sequence[Histogram], weights: Sequence[int] | None = None) -> Histogram:
    """The histograms' samples together (each ``weights`` times, default once): equal cells add up."""
    weights = [1] * len(hists) if weights is None else weights
    lower = np.concatenate([h.lower for h in hists])
    upper = np.concatenate([h.upper for h in hists])
    counts = np.concatenate([h.counts * w for h, w in zip(hists, weights)])
    cells, inverse = np.unique(np.stack([lower, upper], axis=1), axis=0, return_inverse=True)
    return Histogram(cells[:, 0], cells[:, 1], np.bincount(inverse.ravel(), weights=counts, minlength=len(cells)))


def repetition_draws(n: int, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """The first stage of the two-stage bootstrap: n repetitions drawn with replacement, once per resample.
    Grouped by outcome: (how often each repetition was drawn, which resamples drew that)."""
    picks = rng.integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))
    multiplicity = np.stack([np.bincount(row, minlength=n) for row in picks])
    outcomes, inverse = np.unique(multiplicity, axis=0, return_inverse=True)
    return [(outcome, np.flatnonzero(inverse.ravel() == i)) for i, outcome in enumerate(outcomes)]


def as_samples(h: Histogram | Sequence[Histogram]) -> list[Histogram]:
    return [h] if isinstance(h, Histogram) else list(h)


def resampled_quantiles_of(hists: Sequence[Histogram], q: float, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap q-quantiles of one run: of its histogram, or over its repetitions, then within them."""
    if len(hists) == 1:
        return resampled_quantiles(hists[0], q, rng)
    out = np.empty(BOOTSTRAP_RESAMPLES)
    for weights, rows in repetition_draws(len(hists), rng):
        out[rows] = resampled_quantiles(pooled(hists, weights), q, rng, len(rows))
    return out


def sample_text(a: list[Histogram], b: list[Histogram]) -> str:
    na, nb = sum(h.n for h in a), sum(h.n for h in b)
    if len(a) == len(b) == 1:
        return f"{BOOTSTRAP_RESAMPLES} resamples; n {na:,} vs {nb:,}"
    return (f"{BOOTSTRAP_RESAMPLES} resamples of the repetitions, then within; "
            f"{len(a)} vs {len(b)} repetitions, n {na:,} vs {nb:,}")


def quantile_change(a: Histogram | Sequence[Histogram], b: Histogram | Sequence[Histogram], q: float) -> Change | None:
    """B's q-quantile minus A's, with a bootstrap 95 % interval; None when either is empty.

    Each side is one histogram, or one per repetition (pooled for the point, resampled in two stages).
    """
    a, b = as_samples(a), as_samples(b)
    pa, pb = pooled(a), pooled(b)
    if pa.n <= 0 or pb.n <= 0:
        return None
    rng = np.random.default_rng(SEED)
    qa, qb = resampled_quantiles_of(a, q, rng), resampled_quantiles_of(b, q, rng)
    low, high = np.nanpercentile(qb - qa, [2.5, 97.5])
    point_a, point_b = point_quantile(pa, q), point_quantile(pb, q)
    return Change(point_a, point_b, point_b - point_a, float(low), float(high),
                  f"bootstrap of p{q * 100:g} ({sample_text(a, b)})")


Pair = tuple[Histogram, Histogram]


def rise_change(a: Pair | Sequence[Pair], b: Pair | Sequence[Pair], q: float) -> Change | None:
    """A rise (other window's quantile over the base window's, minus 1) in B against the same in A.

    Each side is one (base, other) pair, or one per repetition: pooled window by window for the
    point, and resampled by repetition (the pair kept together), then within each pooled window.
    """
    a = [a] if isinstance(a[0], Histogram) else list(a)
    b = [b] if isinstance(b[0], Histogram) else list(b)

    def pool(pairs: list[Pair], weights=None) -> Pair:
        return pooled([p[0] for p in pairs], weights), pooled([p[1] for p in pairs], weights)

    if min(h.n for h in (*pool(a), *pool(b))) <= 0:
        return None
    rng = np.random.default_rng(SEED)

    def ratio(base: np.ndarray, other: np.ndarray) -> np.ndarray:
        return other / np.where(base > 0, base, np.nan) - 1

    def rises(pairs: list[Pair]) -> np.ndarray:
        if len(pairs) == 1:
            return ratio(resampled_quantiles(pairs[0][0], q, rng), resampled_quantiles(pairs[0][1], q, rng))
        out = np.empty(BOOTSTRAP_RESAMPLES)
        for weights, rows in repetition_draws(len(pairs), rng):
            base, other = pool(pairs, weights)
            out[rows] = ratio(resampled_quantiles(base, q, rng, len(rows)), resampled_quantiles(other, q, rng, len(rows)))
        return out

    def point(pairs: list[Pair]) -> float:
        base, other = (point_quantile(h, q) for h in pool(pairs))
        return other / base - 1 if base > 0 else math.nan

    diff = rises(b) - rises(a)
    low, high = np.nanpercentile(diff, [2.5, 97.5])
    pa, pb = point(a), point(b)
    how = (f"{BOOTSTRAP_RESAMPLES} resamples of both windows" if len(a) == len(b) == 1 else
           f"{BOOTSTRAP_RESAMPLES} resamples of the repetitions, then within; {len(a)} vs {len(b)} repetitions")
    return Change(pa, pb, pb - pa, float(low), float(high), f"bootstrap of the p{q * 100:g} rise ({how})")


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
