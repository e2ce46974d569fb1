"""Requirements as data, verdicts as data, ASR statuses from DESIGN.md §6.

A ``Criterion`` says what is measured, how it is compared and what it is for
(its role in the ASR rule). Evaluating it yields a ``Verdict`` that keeps the
observed value and the exact query used. "No data" is never a pass: a
verdict without samples fails and says which query returned nothing.

The functions here are pure: they take numbers and series already read from
Prometheus, so the rules are unit-tested on recorded series without a stack.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field


class Role(enum.Enum):
    PRIMARY = "primary"
    SECONDARY = "secondary"
    DECOUPLING = "decoupling"
    ERROR_RATE = "error rate"
    SCALING = "linear scaling"
    PEAK_LATENCY = "per-shard p99 at peak"
    ISOLATION = "shard isolation"
    MEMORY = "memory"
    EVENTS = "events"


class Status(enum.Enum):
    PASS = "PASS"
    CONDITIONAL_PASS = "CONDITIONAL PASS"
    FAIL = "FAIL"


COMPARE = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
}


@dataclass(frozen=True)
class Criterion:
    asr: str  # "ASR 1" / "ASR 2"
    experiment: str  # "A2", "B2", ...
    name: str
    role: Role
    comparison: str
    threshold: float
    unit: str = ""

    def describe(self) -> str:
        return f"{self.experiment} {self.name}: {self.comparison} {self.threshold:g}{(' ' + self.unit) if self.unit else ''}"


@dataclass(frozen=True)
class Verdict:
    criterion: Criterion
    observed: float | None
    passed: bool
    query: str
    detail: str = ""
    window: tuple[float, float] | None = None

    def message(self) -> str:
        c = self.criterion
        observed = "no data" if self.observed is None else f"{self.observed:.6g}{(' ' + c.unit) if c.unit else ''}"
        status = "PASS" if self.passed else "FAIL"
        text = f"[{status}] {c.describe()} | observed {observed} | query: {self.query}"
        return f"{text} | {self.detail}" if self.detail else text

    def to_dict(self) -> dict:
        doc = asdict(self)
        doc["criterion"]["role"] = self.criterion.role.value
        doc["verdict"] = "PASS" if self.passed else "FAIL"
        return doc


def judge(criterion: Criterion, observed: float | None, query: str, detail: str = "", window=None) -> Verdict:
    """Compare an observed value with the criterion; None or NaN is a failing "no data"."""
    if observed is None or (isinstance(observed, float) and math.isnan(observed)):
        return Verdict(criterion, None, False, query, f"no data: the query returned nothing{'; ' + detail if detail else ''}", window)
    return Verdict(criterion, observed, COMPARE[criterion.comparison](observed, criterion.threshold), query, detail, window)


def relative_change_ok(base: float | None, other: float | None, max_ratio: float, tolerance: float) -> tuple[float | None, bool]:
    """(relative change, ok): ``other`` may exceed ``base`` by ``max_ratio``, or by ``tolerance`` absolute.

    The absolute tolerance is the measurement's resolution (histogram buckets
    a fraction of a millisecond apart): below it a "10 % change" is noise.
    """
    if base is None or other is None or math.isnan(base) or math.isnan(other):
        return None, False
    change = (other - base) / base if base > 0 else (0.0 if other == base else math.inf)
    return change, (other <= base * (1 + max_ratio)) or (other - base <= tolerance)


QUANTILE_Z = 2.0
MAX_QUANTILE = 0.9999


def quantile_band(q: float, n: float, z: float = QUANTILE_Z) -> tuple[float, float]:
    """The quantiles a q-quantile estimated from ``n`` samples cannot be told apart from.

    The rank of the q-quantile among n samples is binomial, with a standard
    error of sqrt(q(1-q)/n) as a fraction of n: a p99 from 1,500 samples is
    decided by its ~15 slowest, give or take 4. The band is ``z`` standard
    errors either side (the order-statistic confidence interval of a quantile).
    """
    if n <= 0:
        return 0.0, MAX_QUANTILE
    half = z * math.sqrt(q * (1 - q) / n)
    return max(0.0, q - half), min(MAX_QUANTILE, q + half)


def smallest_detectable_rise(
    base: float | None, base_hi: float | None, other: float | None, other_lo: float | None, max_ratio: float, tolerance: float
) -> float | None:
    """The rise of the point p99 below which a band comparison cannot fail, at these bands' widths.

    The comparison fails once ``other_lo`` exceeds the larger of
    ``base_hi * (1 + max_ratio)`` and ``base_hi + tolerance``; ``other_lo``
    scales with ``other`` roughly as ``other_lo / other``. This is what a
    verdict says about its own resolving power.
    """
    values = (base, base_hi, other, other_lo)
    if any(v is None or math.isnan(v) or v <= 0 for v in values):
        return None
    failing_lo = max(base_hi * (1 + max_ratio), base_hi + tolerance)
    return failing_lo * (other / other_lo) / base - 1


# -- series tests ----------------------------------------------------------------


def runs(points: Sequence[tuple[float, float]], ok, step: float) -> list[tuple[bool, float]]:
    """Consecutive stretches of points where ``ok(value)`` holds or not: (holds, duration_s).

    A missing point (a gap in the series longer than one step) ends a stretch.
    """
    out: list[tuple[bool, float]] = []
    prev_t = None
    for t, v in points:
        state = bool(ok(v))
        if out and out[-1][0] == state and prev_t is not None and t - prev_t <= step * 1.5:
            out[-1] = (state, out[-1][1] + step)
        else:
            out.append((state, step))
        prev_t = t
    return out


@dataclass(frozen=True)
class SustainResult:
    longest_above_s: float
    longest_below_s: float
    minimum: float | None


def sustained(points: Sequence[tuple[float, float]], threshold: float, step: float) -> SustainResult:
    stretches = runs(points, lambda v: v >= threshold, step)
    above = [d for s, d in stretches if s]
    below = [d for s, d in stretches if not s]
    return SustainResult(max(above, default=0.0), max(below, default=0.0), min((v for _, v in points), default=None))


def mann_kendall(values: Sequence[float]) -> tuple[float, float]:
    """Mann-Kendall trend test: (S statistic, two-sided p-value), normal approximation with ties."""
    n = len(values)
    if n < 4:
        return 0.0, 1.0
    s = 0
    for i in range(n - 1):
        vi = values[i]
        for j in range(i + 1, n):
            d = values[j] - vi
            s += (d > 0) - (d < 0)
    counts: dict[float, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    var = (n * (n - 1) * (2 * n + 5) - sum(t * (t - 1) * (2 * t + 5) for t in counts.values())) / 18
    if var <= 0:
        return float(s), 1.0
    z = (s - 1) / math.sqrt(var) if s > 0 else (s + 1) / math.sqrt(var) if s < 0 else 0.0
    p = math.erfc(abs(z) / math.sqrt(2))
    return float(s), p


def monotonic_growth(values: Sequence[float], alpha: float = 0.05, min_growth: float = 0.05) -> tuple[bool, float, float]:
    """(grows, p-value, relative growth first->last quarter): growth needs a significant upward trend *and* size."""
    if len(values) < 4:
        return False, 1.0, 0.0
    s, p = mann_kendall(values)
    q = max(1, len(values) // 4)
    first, last = sum(values[:q]) / q, sum(values[-q:]) / q
    growth = (last - first) / first if first > 0 else 0.0
    return (s > 0 and p < alpha and growth > min_growth), p, growth


# -- ASR statuses ------------------------------------------------------------------


@dataclass
class AsrOutcome:
    asr: str
    status: Status
    reason: str
    verdicts: list[Verdict] = field(default_factory=list)


def _by_role(verdicts: Sequence[Verdict], *roles: Role) -> list[Verdict]:
    return [v for v in verdicts if v.criterion.role in roles]


def asr1_status(verdicts: Sequence[Verdict]) -> AsrOutcome:
    """PASS: primary, decoupling, secondary and error rate all pass. CONDITIONAL PASS: the
    primary (with a valid error rate) passes but a secondary or the decoupling fails. FAIL otherwise,
    including when the primary or the error rate has no data."""
    vs = [v for v in verdicts if v.criterion.asr == "ASR 1"]
    required = _by_role(vs, Role.PRIMARY, Role.ERROR_RATE)
    others = [v for v in vs if v not in required]
    return _status("ASR 1", vs, required, others)


def asr2_status(verdicts: Sequence[Verdict]) -> AsrOutcome:
    """PASS: sustained throughput, linear scaling and per-shard peak p99 pass, and isolation and
    memory pass too. CONDITIONAL PASS: throughput (with scaling and peak p99) passes but isolation,
    memory or another secondary fails. FAIL otherwise."""
    vs = [v for v in verdicts if v.criterion.asr == "ASR 2"]
    required = _by_role(vs, Role.PRIMARY, Role.SCALING, Role.PEAK_LATENCY, Role.ERROR_RATE)
    others = [v for v in vs if v not in required]
    return _status("ASR 2", vs, required, others)


def _status(asr: str, vs: list[Verdict], required: list[Verdict], others: list[Verdict]) -> AsrOutcome:
    if not vs or not any(v.criterion.role is Role.PRIMARY for v in required):
        return AsrOutcome(asr, Status.FAIL, "no primary criterion was evaluated", vs)
    failed_required = [v for v in required if not v.passed]
    if failed_required:
        return AsrOutcome(asr, Status.FAIL, "; ".join(v.criterion.describe() for v in failed_required) + " failed", vs)
    failed_other = [v for v in others if not v.passed]
    if failed_other:
        return AsrOutcome(
            asr, Status.CONDITIONAL_PASS, "; ".join(v.criterion.describe() for v in failed_other) + " failed", vs
        )
    return AsrOutcome(asr, Status.PASS, "every criterion passed", vs)
