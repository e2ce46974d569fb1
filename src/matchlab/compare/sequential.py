"""Looks at a comparison while it runs, with the error rate spent across them (a group-sequential design).

A relative criterion runs its cycles and looks at the evidence after a
schedule of cycle counts declared before the run (``LookSchedule``); the last
look is the cap. Each look gets a share of the error rate from the
Lan-DeMets O'Brien-Fleming spending function, alpha(t) = 2 - 2 Phi(z_{alpha/2}
/ sqrt(t)), t the share of the cap's cycles seen so far: early looks get
almost nothing (they decide only on overwhelming evidence), the cap nearly
all of it. Spending each look's increment as its own two-sided level adds up
to at most ``alpha`` over the run (Bonferroni over the looks), so stopping at
the first decided look keeps the overall error rate within ``alpha``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

ALPHA = 0.05
_NORMAL = NormalDist()


def obrien_fleming_spent(t: float, alpha: float = ALPHA) -> float:
    """The error rate spent by information fraction ``t`` (0 < t <= 1), two-sided."""
    if not 0 < t <= 1:
        raise ValueError(f"an information fraction lies in (0, 1], got {t}")
    z = _NORMAL.inv_cdf(1 - alpha / 2)
    return 2 - 2 * _NORMAL.cdf(z / math.sqrt(t))


@dataclass(frozen=True)
class LookSchedule:
    """After how many cycles each look is taken (increasing); the last is the cap."""

    cycles: tuple[int, ...]
    alpha: float = ALPHA

    def __post_init__(self) -> None:
        if not self.cycles or any(c < 1 for c in self.cycles) or list(self.cycles) != sorted(set(self.cycles)):
            raise ValueError(f"looks are taken after an increasing list of cycle counts >= 1, got {self.cycles}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"an error rate lies in (0, 1), got {self.alpha}")

    @property
    def cap(self) -> int:
        return self.cycles[-1]

    def levels(self) -> tuple[float, ...]:
        """Each look's two-sided error rate: its increment of the spending function."""
        spent = [obrien_fleming_spent(c / self.cap, self.alpha) for c in self.cycles]
        return tuple(b - a for a, b in zip([0.0, *spent], spent))

    def level_after(self, cycles: int) -> float | None:
        """The error rate of the look taken after ``cycles`` cycles; None if no look is scheduled then."""
        if cycles not in self.cycles:
            return None
        return self.levels()[self.cycles.index(cycles)]

    def describe(self) -> str:
        looks = ", ".join(f"{c} ({level:.2%})" for c, level in zip(self.cycles, self.levels()))
        return (f"looks after {looks} cycles: O'Brien-Fleming spending of a {self.alpha:.0%} error rate, "
                f"cap {self.cap} cycles")
