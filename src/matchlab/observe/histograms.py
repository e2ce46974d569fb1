"""Quantiles and their confidence intervals from Prometheus histogram buckets.

A window's evidence is one bucket vector (``sum by (le) (increase(…[w]))``
at the window's end): cumulative counts per upper bound. From it this module
computes what ``histogram_quantile`` computes (linear interpolation within
the bucket), and the interval a quantile cannot be told apart from with n
samples: the rank of the q-quantile among n samples is binomial (standard
error sqrt(n q (1-q))), and within a bucket the true value may sit anywhere
between its bounds — so an interval's ends are bucket *edges*, which is where
the buckets' width enters every tolerance.

Pure functions on numbers: unit-tested without Prometheus.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z_95 = 1.96  # two-sided 95 % for each interval


@dataclass(frozen=True)
class Buckets:
    """Cumulative counts per upper bound, sorted, the last bound +Inf."""

    bounds: tuple[float, ...]
    counts: tuple[float, ...]

    @classmethod
    def from_pairs(cls, pairs: Sequence[tuple[float, float]]) -> Buckets:
        ordered = sorted(pairs)
        if not ordered or not math.isinf(ordered[-1][0]):
            raise ValueError("a histogram's buckets end with le=+Inf")
        # Counters scraped a moment apart can be off by one: keep the vector monotonic.
        counts, top = [], 0.0
        for _, c in ordered:
            top = max(top, c)
            counts.append(top)
        return cls(tuple(b for b, _ in ordered), tuple(counts))

    @property
    def n(self) -> float:
        return self.counts[-1] if self.counts else 0.0

    def to_dict(self) -> dict:
        """JSON-ready (+Inf as the string "+Inf"); ``from_dict`` is its inverse."""
        return {"le": ["+Inf" if math.isinf(b) else b for b in self.bounds], "cumulative": list(self.counts)}

    @classmethod
    def from_dict(cls, doc: dict) -> Buckets:
        return cls.from_pairs([(float(b), float(c)) for b, c in zip(doc["le"], doc["cumulative"], strict=True)])

    def _bucket_at(self, rank: float) -> int:
        for i, c in enumerate(self.counts):
            if c >= rank:
                return i
        return len(self.counts) - 1

    def _lower_edge(self, i: int) -> float:
        return self.bounds[i - 1] if i > 0 else 0.0

    def _upper_edge(self, i: int) -> float:
        # The +Inf bucket has no upper edge: its lower one is the best bound there is.
        return self.bounds[i] if not math.isinf(self.bounds[i]) else self._lower_edge(i)

    def value_at_rank(self, rank: float) -> float:
        """histogram_quantile's interpolation at a rank (1..n)."""
        i = self._bucket_at(rank)
        if math.isinf(self.bounds[i]):
            return self._lower_edge(i)
        below = self.counts[i - 1] if i > 0 else 0.0
        inside = self.counts[i] - below
        lo, hi = self._lower_edge(i), self.bounds[i]
        return hi if inside <= 0 else lo + (hi - lo) * (rank - below) / inside

    def quantile(self, q: float) -> float | None:
        return None if self.n <= 0 else self.value_at_rank(q * self.n)

    def interval(self, q: float, z: float = Z_95) -> tuple[float, float] | None:
        """(lower, upper) bound of the q-quantile: rank band +- z standard errors, widened to bucket edges."""
        n = self.n
        if n <= 0:
            return None
        half = z * math.sqrt(n * q * (1 - q))
        lo_rank, hi_rank = max(1.0, q * n - half), min(n, q * n + half)
        return self._lower_edge(self._bucket_at(lo_rank)), self._upper_edge(self._bucket_at(hi_rank))

    def bucket_width_at(self, q: float) -> float | None:
        """Relative width (upper / lower - 1) of the bucket the q-quantile falls in."""
        if self.n <= 0:
            return None
        i = self._bucket_at(q * self.n)
        lo, hi = self._lower_edge(i), self._upper_edge(i)
        return math.inf if lo <= 0 else hi / lo - 1


@dataclass(frozen=True)
class Rise:
    """The relative change of a quantile from a baseline window to another, with its 95 % interval."""

    base: float
    other: float
    point: float  # other / base - 1
    low: float
    high: float
    n_base: float
    n_other: float

    @property
    def half_width(self) -> float:
        """The resolving power: a true rise this far from the observed one could not be told apart."""
        return (self.high - self.low) / 2


def quantile_rise(base: Buckets, other: Buckets, q: float = 0.99, z: float = Z_95) -> Rise | None:
    """None when either window has no samples (no data is never a verdict)."""
    b, o = base.quantile(q), other.quantile(q)
    bi, oi = base.interval(q, z), other.interval(q, z)
    if b is None or o is None or bi is None or oi is None or b <= 0 or bi[0] <= 0:
        return None
    return Rise(b, o, o / b - 1, oi[0] / bi[1] - 1, oi[1] / bi[0] - 1, base.n, other.n)


def samples_needed(rise: Rise, target_half_width: float, floor: float) -> float | None:
    """Roughly how many samples per window would bring the interval's half-width to ``target_half_width``.

    The rank part of the width shrinks as 1/sqrt(n); ``floor`` is the part
    no sample count removes (the buckets' own width). None: unreachable.
    """
    rank_part = rise.half_width - floor
    want = target_half_width - floor
    if want <= 0:
        return None
    if rank_part <= want:
        return max(rise.n_base, rise.n_other)
    return max(rise.n_base, rise.n_other) * (rank_part / want) ** 2
