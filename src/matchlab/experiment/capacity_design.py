"""How a capacity measurement is laid out in time, per profile: a short bracket, then rounds of fixed rates.

A leaf (it imports only the look schedule and the scrape interval), so the
profiles can hold a design without importing what runs it (``capacity_search``).

Each configuration's knee is first bracketed with short steps (the rate grows
until a step fails, then halves the gap to ``BRACKET_PRECISION``). Then come
rounds: each spreads ``rates_per_round`` fixed rates per configuration evenly
(in log rate) across ``SPREAD`` either side of the bracket's middle, each
round's grid offset from the last one's so that the rounds fill in between
each other, and runs the interleaved configurations A-B-B-A (half of A's
rates, half of B's, B's other half, A's other half) so that a drift in the
machine's speed weighs on both. The looks after some rounds are a
group-sequential schedule (``LookSchedule``, counted in rounds).

A round step's evidence (its length less the excluded start) is a whole
number of Prometheus scrape intervals, so every step's evidence holds the
same number of scrapes of every service, whatever their phase: a scrape costs
a shard under a small budget a few milliseconds of its quota, and a step that
held one more than the next would differ for that alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from matchlab.compare.sequential import LookSchedule
from matchlab.stack.prometheus_config import SCRAPE_INTERVAL

SPREAD = 0.15  # rounds cover the bracket's middle +-15 %
BRACKET_GROWTH = 1.25  # the bracket's rate grows by a quarter per passing step ...
BRACKET_PRECISION = 0.10  # ... and is bisected until the failing rate is within 10 % of the passing one
BRACKET_MAX_STEPS = 10
SCRAPE_INTERVAL_S = float(SCRAPE_INTERVAL.removesuffix("s"))
# A first step that fails halves the rate, at most four times (to 1/16 of the start): a machine that needs
# several times the CPU per order still gets a bracket.
BRACKET_DOWN = 2.0
BRACKET_STEPS_DOWN = 4


@dataclass(frozen=True)
class CapacityDesign:
    bracket_step_s: float  # a bracket step's length
    step_s: float  # a round step's length
    excluded_s: float  # left out of a round step's client-side evidence (a bracket step leaves out a quarter)
    rates_per_round: int  # per configuration, even (half before and half after the other configuration)
    looks: LookSchedule  # counted in rounds

    def __post_init__(self) -> None:
        if self.rates_per_round < 2 or self.rates_per_round % 2:
            raise ValueError(f"a round runs an even number of rates per configuration (A-B-B-A), got "
                             f"{self.rates_per_round}")
        if not 0 <= self.excluded_s < self.step_s:
            raise ValueError(f"the excluded start ({self.excluded_s:g} s) must be shorter than a step "
                             f"({self.step_s:g} s)")
        if (self.step_s - self.excluded_s) % SCRAPE_INTERVAL_S:
            raise ValueError(f"a step's evidence ({self.step_s:g} s less {self.excluded_s:g} s) must be a whole "
                             f"number of {SCRAPE_INTERVAL_S:g} s scrape intervals")

    @property
    def bracket_excluded_s(self) -> float:
        return self.bracket_step_s / 4

    def round_rates(self, centre: float, round_index: int) -> list[float]:
        """The round's rates for one configuration, ascending: ``rates_per_round`` cells of equal width in log
        rate across centre x (1 +- SPREAD), one rate per cell at an offset that differs every round (the van der
        Corput sequence: 1/2, 1/4, 3/4, 1/8, ...), so that successive rounds fill in between each other."""
        low, high = math.log(centre * (1 - SPREAD)), math.log(centre * (1 + SPREAD))
        width = (high - low) / self.rates_per_round
        offset = van_der_corput(round_index + 1)
        return [math.exp(low + (j + offset) * width) for j in range(self.rates_per_round)]

    def describe(self) -> str:
        return (f"bracket steps of {self.bracket_step_s:g} s (first {self.bracket_excluded_s:g} s left out), then "
                f"rounds of {self.rates_per_round} rates per configuration across +-{SPREAD:.0%} of the bracket, "
                f"steps of {self.step_s:g} s with the first {self.excluded_s:g} s left out, A-B-B-A; "
                f"{self.looks.describe().replace('cycles', 'rounds')}")


def van_der_corput(k: int) -> float:
    """The k-th point (k >= 1) of the base-2 van der Corput sequence: 1/2, 1/4, 3/4, 1/8, 5/8, ..."""
    value, denominator = 0.0, 1.0
    while k:
        denominator *= 2
        k, bit = divmod(k, 2)
        value += bit / denominator
    return value


def interleave(halves: dict[str, tuple[list[float], list[float]]], order: list[str]) -> list[tuple[str, float]]:
    """A round's steps, A-B-B-A: each configuration's first half in ``order``, then their second halves reversed."""
    first = [(key, rate) for key in order for rate in halves[key][0]]
    second = [(key, rate) for key in reversed(order) for rate in halves[key][1]]
    return first + second


def halves(rates: list[float]) -> tuple[list[float], list[float]]:
    """A configuration's round split so that each half spans the whole range: (low, high-ish) and the others."""
    return rates[0::2], rates[1::2][::-1]
