"""Capacities from every step: logistic 50 % points, their ratio with a bootstrap interval, and the USL behind it.

Each configuration's capacity is the rate at which a step is as likely to
pass as to fail: the 50 % point of a logistic fit of pass/fail against log
rate over every step of that configuration, bracket and rounds alike
(``matchlab.compare.logistic``). Its interval, and the scaling ratio's,
come from a bootstrap over steps: each configuration's steps are resampled
on their own (they were run as separate trials), both curves refitted, the
ratio recomputed. A resample that drew only passes (or only fails) of a
configuration puts its capacity beyond the drawn rates, +inf (or 0), so an
interval the steps do not pin down widens instead of being cut short; a
resample's 50 % point outside the rates tried is held to them.

The steps that failed because the configuration fell behind (``Step.overloaded``;
not those where the load generator or the machine's cores ran out first)
measured what it tops out at: the Universal Scalability Law is fitted to all
of them (``observe.usl``), and the ratio it implies is shown beside the
measured one. It explains; the capacities decide.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from matchlab.compare.logistic import RESAMPLES, SEED, Curve, resample_weights
from matchlab.experiment.scaling import Step, foreign_limit
from matchlab.observe.usl import UslFit, UslIntervals, bootstrap_usl, fit_usl


@dataclass(frozen=True)
class CapacityEstimate:
    """One configuration's capacity from its steps, with a percentile bootstrap interval at ``level``."""

    key: str
    steps: int
    passes: int
    estimate: float | None  # None: its steps never both passed and failed
    interval: tuple[float, float] | None
    level: float
    draws: np.ndarray  # every resample's 50 % point (+inf / 0 where a resample held one outcome only)

    bound: float | None = None  # without an estimate: above every passed rate, or below every failed one

    def describe(self) -> str:
        if self.estimate is None:
            if not self.steps:
                return f"{self.key}: no capacity (no steps)"
            outcome = (f"every step passed: above {self.bound:,.0f} orders/s" if self.passes == self.steps else
                       f"every step failed: below {self.bound:,.0f} orders/s")
            return f"{self.key}: no capacity ({outcome}, {self.steps} steps)"
        low, high = self.interval or (math.nan, math.nan)
        return (f"{self.key}: {self.estimate:,.0f} orders/s [{_rate(low)}, {_rate(high)}] "
                f"({self.passes} of {self.steps} steps passed)")


def _rate(v: float) -> str:
    return "inf" if math.isinf(v) else f"{v:,.0f}"


def curve_of(steps: Sequence[Step]) -> Curve:
    return Curve(tuple(s.rate for s in steps), tuple(s.passed for s in steps))


def quantiles(values: np.ndarray, level: float) -> tuple[float, float]:
    """The central ``level`` interval of the draws, read off the draws themselves (no interpolation across inf)."""
    tail = (1 - level) / 2
    low, high = np.quantile(values, [tail, 1 - tail], method="inverted_cdf")
    return float(low), float(high)


def estimate_capacity(key: str, steps: Sequence[Step], level: float, resamples: int = RESAMPLES,
                      rng: np.random.Generator | None = None) -> CapacityEstimate:
    rng = rng or np.random.default_rng(SEED)
    curve = curve_of(steps)
    passes = sum(curve.passed)
    estimate = curve.capacity() if steps else None
    if estimate is None:
        rates = [s.rate for s in steps]
        bound = (max(rates) if passes else min(rates)) if rates else None
        return CapacityEstimate(key, len(steps), passes, None, None, level, np.full(resamples, np.nan), bound)
    weights = resample_weights(len(steps), resamples, rng)
    # A resample's 50 % point beyond every rate tried is an extrapolation (a few steps that failed far below the
    # knee flatten its curve): it is held to the rates tried, which is all the steps can say.
    rates = np.asarray(curve.rates)
    draws = np.clip(curve.midpoints(weights), rates.min(), rates.max())
    passed = np.asarray(curve.passed)
    only_passes = weights[:, ~passed].sum(1) == 0
    draws = np.where(only_passes, np.inf, np.where(np.isnan(draws), 0.0, draws))
    return CapacityEstimate(key, len(steps), passes, estimate, quantiles(draws, level), level, draws)


def estimate_capacities(steps: Sequence[Step], level: float, resamples: int = RESAMPLES,
                        seed: int = SEED) -> dict[str, CapacityEstimate]:
    """Every configuration's capacity (keyed as the steps name their configuration), resampled independently."""
    rng = np.random.default_rng(seed)
    keys = sorted({s.config for s in steps})
    return {k: estimate_capacity(k, [s for s in steps if s.config == k], level, resamples, rng) for k in keys}


@dataclass(frozen=True)
class RatioEstimate:
    """capacity(n) / (n x capacity(1)) with its bootstrap interval."""

    estimate: float | None
    interval: tuple[float, float] | None
    level: float

    def describe(self) -> str:
        if self.estimate is None:
            return "no ratio (a capacity is missing)"
        if self.interval is None:
            return f"no ratio's interval (a capacity is missing): {self.estimate:.3f} from a bound"
        return (f"ratio {self.estimate:.3f}, {self.level:.1%} interval [{self.interval[0]:.3f}, "
                f"{self.interval[1]:.3f}] (bootstrap over steps)")


def scaling_ratio(one: CapacityEstimate, many: CapacityEstimate, n: int) -> RatioEstimate:
    if one.estimate is None or many.estimate is None:
        # A bound where a capacity has one: what the ratio is at least (or at most), no interval.
        a, b = one.estimate or one.bound, many.estimate or many.bound
        return RatioEstimate(b / (n * a) if a and b else None, None, one.level)
    with np.errstate(divide="ignore", invalid="ignore"):
        draws = many.draws / (n * one.draws)
    draws = np.where(np.isnan(draws), 1.0, draws)  # inf / inf or 0 / 0: nothing known either way
    return RatioEstimate(many.estimate / (n * one.estimate), quantiles(draws, one.level), one.level)


@dataclass(frozen=True)
class UslFromSteps:
    """The USL over every overloaded step's throughput, or why there is none."""

    fit: UslFit | None
    intervals: UslIntervals | None
    throughputs: dict[int, list[float]]  # N -> every overloaded step's orders/s
    why_not: str = ""

    def describe(self, n: int) -> str:
        if self.fit is None or self.intervals is None:
            return f"no USL fit: {self.why_not}"
        return (f"{self.fit.describe()}; {self.intervals.describe()}; the model's X({n}) / ({n} X(1)) "
                f"{self.fit.implied_ratio(n):.3f}")


def usl_from_steps(steps: Sequence[Step], n: int, level: float = 0.95) -> UslFromSteps:
    by_n: dict[int, list[float]] = {}
    for s in steps:
        if s.overloaded and s.shards and not foreign_limit(s):  # the load generator's or the machine's top is not it
            by_n.setdefault(s.shards, []).append(s.throughput)
    if len(by_n) < 3:
        return UslFromSteps(None, None, by_n, f"overloaded steps at {len(by_n)} shard count(s) "
                                                f"({', '.join(f'N={k}' for k in sorted(by_n)) or 'none'}); "
                                                "three are needed")
    points = [(k, x) for k, xs in by_n.items() for x in xs]
    return UslFromSteps(fit_usl(points), bootstrap_usl(by_n, n, level), by_n)


def fills_per_order(steps: Sequence[Step]) -> float | None:
    """Fills per accepted order over every step: the flow's, as the shards counted it."""
    orders = sum(sum(s.orders.values()) for s in steps)
    return sum(s.matches for s in steps) / orders if orders else None


def steps_by_config(steps: Sequence[Step]) -> Mapping[str, list[Step]]:
    out: dict[str, list[Step]] = {}
    for s in steps:
        out.setdefault(s.config, []).append(s)
    return out
