"""What a criterion measured, as one typed record, and the one place a measurement becomes a verdict.

Every criterion's measure returns a ``Measurement``: the estimate, its
interval where the data give one (with the interval's confidence), how much
evidence stood behind it (orders, blocks, cycles), the exact query, a detail
line and, where the experiment itself says the data cannot decide (a
precondition not met, two tests that disagree), why. ``decide`` turns it
into a verdict by the same rule for every criterion:

- no estimate: a failure that names the query that returned nothing;
- a reason the evidence fails the criterion (it contradicts itself, the
  system fell behind): FAIL, with that reason;
- a reason the data cannot decide: INCONCLUSIVE, with that reason;
- an interval: PASS when it lies wholly on the bar's good side, FAIL when
  wholly on the bad side, INCONCLUSIVE when it straddles the bar (its
  half-width is the resolving power);
- otherwise: the estimate against the bar.
"""

from __future__ import annotations

import math
from dataclasses import KW_ONLY, dataclass, replace

from matchlab.observe.verdicts import COMPARE, Criterion, Status, Verdict, no_data, render


@dataclass(frozen=True)
class Measurement:
    estimate: float | None
    query: str
    detail: str = ""
    _: KW_ONLY  # the rest by name: several are numbers, easy to swap by position
    interval: tuple[float, float] | None = None
    level: float | None = None  # the interval's confidence (e.g. 0.95, or a look's share of it)
    n: int | None = None  # orders (or samples) behind the estimate
    blocks: int | None = None
    cycles: int | None = None
    window: tuple[float, float] | None = None
    evidence: dict | None = None
    undecidable: str = ""  # non-empty: the experiment says the data cannot decide, and why
    fails: str = ""  # non-empty: the evidence shows the criterion failed whatever the estimate (e.g. it contradicts
    # itself, or the system fell behind)
    what_would_decide: str = ""  # said when the interval straddles the bar

    @property
    def half_width(self) -> float | None:
        return None if self.interval is None else (self.interval[1] - self.interval[0]) / 2

    def with_detail(self, more: str) -> Measurement:
        return replace(self, detail=f"{self.detail}; {more}" if self.detail else more)

    def evidence_text(self, unit: str) -> str:
        """"95 % interval a to b over 12 blocks of 4 cycles (6,800 orders)"."""
        parts = []
        if self.interval is not None:
            level = f"{self.level:.1%}" if self.level and round(self.level * 100) != self.level * 100 else (
                f"{self.level:.0%}" if self.level else "")
            parts.append(f"{level} interval {render(self.interval[0], unit)} to {render(self.interval[1], unit)}".strip())
        counts = []
        if self.blocks is not None:
            counts.append(f"{self.blocks} blocks" + (f" of {self.cycles} cycles" if self.cycles is not None else ""))
        if self.n is not None:
            counts.append(f"{self.n:,} orders")
        if counts:
            parts.append("over " + ", ".join(counts))
        return " ".join(parts)


def interval_side(comparison: str, bar: float, low: float, high: float) -> Status:
    """Where an interval lies against a bar: wholly good (PASS), wholly bad (FAIL) or across it."""
    if comparison == "within":
        if -bar < low and high < bar:
            return Status.PASS
        return Status.FAIL if low >= bar or high <= -bar else Status.INCONCLUSIVE
    ok = COMPARE[comparison]
    if ok(low, bar) and ok(high, bar):
        return Status.PASS
    if not ok(low, bar) and not ok(high, bar):
        return Status.FAIL
    return Status.INCONCLUSIVE


def decide(criterion: Criterion, m: Measurement) -> Verdict:
    """The verdict of one measurement against its criterion (module docstring)."""
    if m.estimate is None or (isinstance(m.estimate, float) and math.isnan(m.estimate)):
        return no_data(criterion, m.query, m.detail, m.window)
    evidence = m.evidence_text(criterion.unit)
    detail = "; ".join(x for x in (m.detail, evidence) if x)
    power = m.half_width
    if m.fails:
        return Verdict(criterion, m.estimate, Status.FAIL, m.query, f"{detail}; {m.fails}", m.window, power, m.evidence)
    if m.undecidable:
        return Verdict(criterion, m.estimate, Status.INCONCLUSIVE, m.query, f"{detail}; {m.undecidable}", m.window,
                       power, m.evidence)
    if m.interval is not None:
        status = interval_side(criterion.comparison, criterion.threshold, *m.interval)
        if status is Status.INCONCLUSIVE:
            why = (f"the interval straddles the bar ({criterion.comparison} "
                   f"{render(criterion.threshold, criterion.unit)}): these data cannot decide")
            detail += f"; {why}" + (f"; {m.what_would_decide}" if m.what_would_decide else "")
        return Verdict(criterion, m.estimate, status, m.query, detail, m.window, power, m.evidence)
    ok = COMPARE[criterion.comparison](m.estimate, criterion.threshold)
    return Verdict(criterion, m.estimate, Status.PASS if ok else Status.FAIL, m.query, detail, m.window, power,
                   m.evidence)
