"""Running a capacity measurement: bracket each configuration's knee, then rounds of fixed rates until a look decides.

Configurations are whatever a step can be run for (N shards behind the
gateway, one shard at a CPU budget); each has a step function. The bracket
(``bracket``) finds a passing and a failing rate about ``BRACKET_PRECISION``
apart; the rounds (``run_rounds``) run every interleaved configuration at
fixed rates across +-15 % of the middle (the bracket's, then the 50 % point
of every step so far), A-B-B-A, and after each round the schedule names,
``look`` decides whether the evidence suffices.
Every step is a trial and counts once: nothing is retried, nothing is
dropped. A configuration that is not interleaved (N = 2 of S1, which only
feeds the USL fit) gets no bracket, only a few steps well above where linear
scaling would put its knee, where it is overloaded, in the first round.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from matchlab.compare.logistic import Curve
from matchlab.experiment.capacity_design import (
    BRACKET_DOWN,
    BRACKET_GROWTH,
    BRACKET_MAX_STEPS,
    BRACKET_PRECISION,
    BRACKET_STEPS_DOWN,
    SPREAD,
    CapacityDesign,
    halves,
    interleave,
)
from matchlab.experiment.scaling import Step

# In the first round every configuration is also driven well above its knee, where it falls behind all along,
# to measure what it tops out at (the USL's points): one outside the rounds this far above where it was expected
# (linear scaling from the others), once each ...
OVERLOAD_FACTORS = (1.3, 1.5)
# ... one in the rounds this far above the middle of its rates (the rounds reach 1 + SPREAD). Near its knee the
# gateway sheds in bursts and the shards keep up in between; only well above it do they fall behind throughout.
ROUND_OVERLOAD = 1.5

RunStep = Callable[[float, str, float, float], Step]  # (rate, stage, step length, excluded start) -> Step


@dataclass
class Configuration:
    key: str  # "N=1", "0.2 CPU"
    start: float  # the bracket's first rate
    run: RunStep
    interleaved: bool = True  # bracketed and run in every round; else its overload steps only
    low: float | None = None  # the bracket: the highest passing rate ...
    high: float | None = None  # ... and the lowest failing one
    centre: float = 0.0  # where the rounds' rates are spread around

    def describe_bracket(self) -> str:
        def rate(v: float | None) -> str:
            return "none" if v is None else f"{v:,.0f}"
        return f"{self.key}: passed at {rate(self.low)}, failed at {rate(self.high)} orders/s"


@dataclass
class Search:
    design: CapacityDesign
    progress: Callable[[str], None]
    steps: list[Step] = field(default_factory=list)
    rounds: int = 0

    def _run(self, config: Configuration, rate: float, stage: str, step_s: float, excluded_s: float) -> Step:
        step = config.run(rate, stage, step_s, excluded_s)
        step.config, step.stage = config.key, stage
        self.steps.append(step)
        self.progress(f"{config.key} {stage}: {rate:,.0f} orders/s {'passed' if step.passed else 'FAILED'}"
                      + ("" if step.passed else f" ({step.why_not()})"))
        return step

    def bracket(self, config: Configuration) -> None:
        """Grow from ``config.start`` until a step fails, then bisect the gap to BRACKET_PRECISION (in short steps).
        A first step that fails halves the rate instead, at most BRACKET_STEPS_DOWN times."""
        d = self.design
        rate, good, bad = config.start, None, None
        for _ in range(BRACKET_MAX_STEPS):
            if self._run(config, rate, "bracket", d.bracket_step_s, d.bracket_excluded_s).passed:
                good = rate if good is None else max(good, rate)
            else:
                bad = rate if bad is None else min(bad, rate)
            if bad is None:
                rate *= BRACKET_GROWTH
            elif good is None:
                if bad <= config.start / BRACKET_DOWN ** BRACKET_STEPS_DOWN:
                    break  # it fails even far below where it started
                rate = bad / BRACKET_DOWN
            elif (bad - good) / good <= BRACKET_PRECISION:
                break
            else:
                rate = math.sqrt(good * bad)
        config.low, config.high = good, bad
        config.centre = (math.sqrt(good * bad) if good and bad else
                         good * BRACKET_GROWTH if good else (bad or config.start) / BRACKET_DOWN)

    def run_rounds(self, configs: list[Configuration], look: Callable[[int, float], bool]) -> str:
        """Rounds until a scheduled look says the evidence decides, or the cap; returns why it stopped.

        ``look(rounds, alpha)`` is asked after each round the schedule names, with that look's error rate.
        """
        d = self.design
        interleaved = [c for c in configs if c.interleaved]
        levels = dict(zip(d.looks.cycles, d.looks.levels()))
        for k in range(d.looks.cap):
            stage = f"round {k + 1}"
            plan = interleave({c.key: halves(d.round_rates(c.centre, k)) for c in interleaved},
                              [c.key for c in interleaved])
            by_key = {c.key: c for c in configs}
            for key, rate in plan:
                self._run(by_key[key], rate, stage, d.step_s, d.excluded_s)
            if k == 0:
                for c in configs:
                    factors = (ROUND_OVERLOAD,) if c.interleaved else OVERLOAD_FACTORS
                    for factor in factors:
                        self._run(c, c.centre * factor, stage, d.step_s, d.excluded_s)
            self.rounds = k + 1
            for c in interleaved:
                self._recentre(c)
            if self.rounds in levels and look(self.rounds, levels[self.rounds]):
                return f"decided at the look after round {self.rounds} of at most {d.looks.cap}"
        return f"not decided by the cap of {d.looks.cap} rounds"

    def _recentre(self, config: Configuration) -> None:
        """The next round spreads around the 50 % point of every step of the configuration so far, moving at most
        one round's range from where this one was; with one outcome only (every step passed, or failed), one range
        up (down), so the rounds reach the knee even where a stall misplaced the bracket."""
        mine = [s for s in self.steps if s.config == config.key]
        up = (1 + SPREAD) / (1 - SPREAD)
        estimate = Curve(tuple(s.rate for s in mine), tuple(s.passed for s in mine)).capacity() if mine else None
        if estimate is not None:
            config.centre = min(max(estimate, config.centre / up), config.centre * up)
        elif mine:
            config.centre *= up if mine[0].passed else 1 / up
