"""Requirements as data, verdicts as data, ASR statuses from docs/internals/design.md §6.

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
from dataclasses import asdict, dataclass, field, fields, replace


class Role(enum.Enum):
    PRIMARY = "primary"
    SECONDARY = "secondary"
    DECOUPLING = "decoupling"
    ERROR_RATE = "error rate"
    SCALING = "linear scaling"
    PEAK_LATENCY = "per-shard p99 at peak"
    ISOLATION = "shard isolation"
    MEMORY = "memory"
    PRECONDITION = "precondition"
    CALIBRATION = "calibration"  # a sham or a known effect: checks the method, belongs to no ASR


class Status(enum.Enum):
    PASS = "PASS"
    CONDITIONAL_PASS = "CONDITIONAL PASS"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"


COMPARE = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "within": lambda a, b: abs(a) < b,  # a change either way smaller than the bar
}

# Units a criterion is stored in, and how each is shown: latencies are kept in
# seconds and read in milliseconds, sustained stretches in seconds, ratios in %.
LATENCY, DURATION, RATIO = "latency", "duration", "ratio"


def render(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "no data"
    if unit == LATENCY:
        return f"{value * 1000:.2f} ms"
    if unit == DURATION:
        return f"{value:.0f} s"
    if unit == RATIO:
        return f"{value * 100:+.1f} %" if value < 0 else f"{value * 100:.1f} %"
    if abs(value) >= 1000:
        return f"{value:,.0f}{(' ' + unit) if unit else ''}"
    return f"{value:.4g}{(' ' + unit) if unit else ''}"


@dataclass(frozen=True)
class Criterion:
    id: str  # stable key: "A2.p99", "B2.p99.a"; tests, checks and reports look criteria up by it
    asr: str  # "ASR 1" / "ASR 2"
    experiment: str  # "A2", "B2", ...
    name: str  # display text only
    role: Role
    comparison: str
    threshold: float
    unit: str = ""
    measures: str = ""  # one line: what is measured, for the report and the docs' criteria page

    def describe(self) -> str:
        return f"{self.experiment} {self.name}: {self.comparison} {render(self.threshold, self.unit)}"


@dataclass(frozen=True)
class Verdict:
    criterion: Criterion
    observed: float | None
    status: Status  # PASS, FAIL or INCONCLUSIVE for one criterion
    query: str
    detail: str = ""
    window: tuple[float, float] | None = None
    resolving_power: float | None = None  # smallest effect the data could detect, in the criterion's unit
    # The raw evidence judged (e.g. the window's bucket vectors), kept so that two runs can be compared later.
    evidence: dict | None = field(default=None, hash=False, compare=False)

    @property
    def passed(self) -> bool:
        return self.status is Status.PASS

    @property
    def no_data(self) -> bool:
        return self.observed is None and self.status is Status.FAIL

    def message(self) -> str:
        c = self.criterion
        text = f"[{self.status.value}] {c.describe()} | observed {render(self.observed, c.unit)}"
        if self.resolving_power is not None:
            text += f" | resolving power +-{render(self.resolving_power, c.unit)}"
        text += f" | query: {self.query}"
        return f"{text} | {self.detail}" if self.detail else text

    def to_dict(self) -> dict:
        doc = asdict(self)
        doc["criterion"]["role"] = self.criterion.role.value
        doc["status"] = self.status.value
        doc["observed_text"] = render(self.observed, self.criterion.unit)
        doc["threshold_text"] = f"{self.criterion.comparison} {render(self.criterion.threshold, self.criterion.unit)}"
        return doc


def verdict_from_dict(doc: dict) -> Verdict:
    """The inverse of ``Verdict.to_dict`` (keys it does not know, from other versions, are ignored)."""
    c = doc["criterion"]
    names = {f.name for f in fields(Criterion)}
    criterion = Criterion(**{**{k: v for k, v in c.items() if k in names}, "role": Role(c["role"])})
    window = doc.get("window")
    return Verdict(criterion, doc.get("observed"), Status(doc["status"]), doc.get("query", ""), doc.get("detail", ""),
                   tuple(window) if window else None, doc.get("resolving_power"), doc.get("evidence"))


def judge(criterion: Criterion, observed: float | None, query: str, detail: str = "", window=None) -> Verdict:
    """Compare an observed value with the criterion; None or NaN is a failing "no data"."""
    if observed is None or (isinstance(observed, float) and math.isnan(observed)):
        return no_data(criterion, query, detail, window)
    ok = COMPARE[criterion.comparison](observed, criterion.threshold)
    return Verdict(criterion, observed, Status.PASS if ok else Status.FAIL, query, detail, window)


def no_data(criterion: Criterion, query: str, detail: str = "", window=None) -> Verdict:
    return Verdict(criterion, None, Status.FAIL, query,
                   f"no data: the query returned nothing{'; ' + detail if detail else ''}", window)


def inconclusive(criterion: Criterion, observed: float | None, query: str, why: str, window=None,
                 resolving_power: float | None = None) -> Verdict:
    """The data cannot decide: ``why`` names what is missing and what would decide it."""
    return Verdict(criterion, observed, Status.INCONCLUSIVE, query, why, window, resolving_power)


# -- series tests ----------------------------------------------------------------


def runs(points: Sequence[tuple[float, float]], ok, step: float) -> list[tuple[bool, float]]:
    """Consecutive stretches of points where ``ok(value)`` holds or not: (holds, duration_s).

    A stretch spans from its first to its last point, plus the step each
    point stands for at the border with the next stretch (a run of N points
    at a fixed step covers (N - 1) steps between them). A missing point (a
    gap longer than one and a half steps) ends a stretch.
    """
    out: list[list] = []  # [state, first_t, last_t]
    prev_t = None
    for t, v in points:
        state = bool(ok(v))
        if out and out[-1][0] == state and prev_t is not None and t - prev_t <= step * 1.5:
            out[-1][2] = t
        else:
            out.append([state, t, t])
        prev_t = t
    return [(state, last - first) for state, first, last in out]


@dataclass(frozen=True)
class SustainResult:
    longest_above_s: float
    longest_below_s: float
    minimum: float | None
    mean: float | None


def sustained(points: Sequence[tuple[float, float]], threshold: float, step: float) -> SustainResult:
    stretches = runs(points, lambda v: v >= threshold, step)
    above = [d for s, d in stretches if s]
    # A single point below the bar is a dip of one step; a longer one spans its points plus that step.
    below = [d + step for s, d in stretches if not s]
    values = [v for _, v in points]
    return SustainResult(max(above, default=0.0), max(below, default=0.0), min(values, default=None),
                         sum(values) / len(values) if values else None)


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


@dataclass(frozen=True)
class AsrRule:
    """docs/internals/design.md §6 for one ASR: which roles a PASS needs, and which only make it conditional.

    Preconditions (stationary book, empty matcher queue, the outage's
    orders) decide whether the experiment measured what it meant to: when one
    does not hold, the ASR is INCONCLUSIVE unless a required criterion failed.
    """

    asr: str
    required: frozenset[Role]
    conditional: frozenset[Role]


def _names(verdicts: Sequence[Verdict]) -> str:
    return "; ".join(f"{v.criterion.experiment} {v.criterion.name}" for v in verdicts)


@dataclass
class AsrOutcome:
    asr: str
    status: Status
    reason: str
    profile: str = "full"
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def label(self) -> str:
        """The status with the profile in it: a quick run reaches at most "PASS (quick)"."""
        return self.status.value if self.profile == "full" else f"{self.status.value} ({self.profile})"


def asr_status(rule: AsrRule, verdicts: Sequence[Verdict], expected: Sequence[Criterion],
               profile: str = "full") -> AsrOutcome:
    """PASS only when every expected criterion of the ASR was evaluated and decided in its favour."""
    vs = [v for v in verdicts if v.criterion.asr == rule.asr]
    seen = {v.criterion.id for v in vs}
    missing = [c for c in expected if c.asr == rule.asr and c.id not in seen]

    def out(status: Status, reason: str) -> AsrOutcome:
        return AsrOutcome(rule.asr, status, reason, profile, vs)

    required = [v for v in vs if v.criterion.role in rule.required]
    failed = [v for v in required if v.status is Status.FAIL]
    if failed:
        return out(Status.FAIL, f"failed: {_names(failed)}")
    undecided = [v for v in vs if v.status is Status.INCONCLUSIVE and v.criterion.role in rule.required]
    missing_required = [c for c in missing if c.role in rule.required]
    if undecided or missing_required:
        parts = [f"undecided: {_names(undecided)}"] if undecided else []
        parts += [f"not evaluated: {'; '.join(c.experiment + ' ' + c.name for c in missing_required)}"] if missing_required else []
        return out(Status.INCONCLUSIVE, " | ".join(parts))
    broken = [v for v in vs if v.criterion.role is Role.PRECONDITION and not v.passed]
    missing_pre = [c for c in missing if c.role is Role.PRECONDITION]
    if broken or missing_pre:
        names = _names(broken) + ("; " if broken and missing_pre else "") + "; ".join(c.name for c in missing_pre)
        return out(Status.INCONCLUSIVE, f"the experiment's preconditions did not hold: {names}")
    cond_failed = [v for v in vs if v.criterion.role in rule.conditional and v.status is Status.FAIL]
    if cond_failed:
        return out(Status.CONDITIONAL_PASS, f"required criteria passed; failed: {_names(cond_failed)}")
    cond_open = [v for v in vs if v.criterion.role in rule.conditional and not v.passed]
    cond_missing = [c for c in missing if c.role in rule.conditional]
    if cond_open or cond_missing:
        names = _names(cond_open) + ("; " if cond_open and cond_missing else "") + "; ".join(
            c.experiment + " " + c.name for c in cond_missing)
        return out(Status.INCONCLUSIVE, f"required criteria passed; undecided or not evaluated: {names}")
    return out(Status.PASS, f"all {len(vs)} criteria passed")


SEVERITY = {Status.PASS: 0, Status.CONDITIONAL_PASS: 1, Status.INCONCLUSIVE: 2, Status.FAIL: 3}


def badness(v: Verdict) -> tuple[int, float]:
    """How bad a verdict is: its status first, then how far its value lies on the wrong side (a higher p99
    under a "<" bar), so that among repetitions of equal status the one nearest failing stands for them."""
    value = v.observed if isinstance(v.observed, (int, float)) and math.isfinite(v.observed) else 0.0
    if v.criterion.comparison == "within":
        value = abs(value)
    direction = {"<": 1, "<=": 1, ">": -1, ">=": -1, "within": 1}.get(v.criterion.comparison, 0)
    return SEVERITY[v.status], direction * value


def worst_of_repetitions(per_repetition: Sequence[Sequence[Verdict]]) -> list[Verdict]:
    """One verdict per criterion over the repetitions of an experiment (``--repeat N``): the worst one's.

    Each repetition is a whole experiment with its own windows, so each is judged on its own and
    the criterion holds only if it held every time (FAIL over INCONCLUSIVE over PASS; among equal
    statuses, the value nearest failing, ``badness``). The detail lists every repetition's status and value, and the
    evidence keeps every repetition's, for a comparison to pool. One repetition: its verdicts unchanged.
    """
    if len(per_repetition) == 1:
        return list(per_repetition[0])
    by_id: dict[str, list[tuple[int, Verdict]]] = {}
    for k, verdicts in enumerate(per_repetition, 1):
        for v in verdicts:
            by_id.setdefault(v.criterion.id, []).append((k, v))
    combined = []
    for judged in by_id.values():
        k, worst = max(judged, key=lambda kv: badness(kv[1]))
        each = "; ".join(f"{j}: {v.status.value} {render(v.observed, v.criterion.unit)}" for j, v in judged)
        detail = f"worst of {len(per_repetition)} repetitions (repetition {k}); each: {each}"
        evidence = {**(worst.evidence or {}), "repetitions": [
            {"repetition": j, "status": v.status.value, "observed": v.observed, "evidence": v.evidence}
            for j, v in judged]}
        combined.append(replace(worst, detail=f"{detail} | {worst.detail}" if worst.detail else detail,
                                evidence=evidence))
    return combined
