"""What a shard's CPU buys: a fixed cost per second and a cost per order, and the budget a rate needs.

A shard held to a CPU budget B tops out where its CPU runs out. In an
overloaded step it uses all of B, and what it gets through is its most:
B = F + c X(B), with F a fixed cost per second (the wake-ups a busy shard
still makes: timers, the journal's commits, its periods under the quota) and
c the cost of one order. So its capacity is affine in its budget,
X(B) = (B - F) / c, and more than doubles when the budget doubles (F is paid
once). Below its top a shard's CPU use says little about this: under a
quota it fills its budget long before its knee (orders arriving together
share wake-ups), so only overloaded steps, at two or more budgets, are
points of the fit (least squares, CPU used per second against orders per
second, with a bootstrap over the points for intervals).

``size_shards`` answers the question a team asks: from the cost model, one
configuration's measured capacity at a known budget and the USL's σ and κ,
the smallest CPU per shard at which N shards carry a rate, for each N, with
its interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from matchlab.experiment.capacity_fit import quantiles
from matchlab.experiment.scaling import Step

RESAMPLES = 2000
SEED = 35  # fixed: the same steps always give the same intervals
# A budget is stated and set to the millicore, rounded up: the kernel's quota is an integer count of microseconds.
BUDGET_STEP = 0.001


@dataclass(frozen=True)
class CostPoint:
    budget: float  # the shard's CPU budget
    orders_per_s: float  # what it got through in an overloaded step
    cpu_per_s: float  # CPUs it used meanwhile


def cost_points(steps: Sequence[Step]) -> list[CostPoint]:
    """Every shard of every overloaded step: its budget, its orders/s and its CPUs over the step."""
    points = []
    for s in steps:
        if not s.overloaded or not s.seconds:
            continue
        for shard, orders in s.orders.items():
            cpu = s.cpu_used.get(f"me-shard-{shard}")
            if cpu is not None and orders > 0:
                points.append(CostPoint(s.shard_cpu, orders / s.seconds, cpu))
    return points


def _line(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least-squares intercept and slope, one per row of ``w``."""
    sw = w.sum(1)
    mx, my = (w @ x) / sw, (w @ y) / sw
    sxx = w @ (x * x) - sw * mx * mx
    sxy = w @ (x * y) - sw * mx * my
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = sxy / sxx
    return my - slope * mx, slope


@dataclass(frozen=True)
class CostModel:
    fixed: float  # F, CPUs
    per_order: float  # c, CPU seconds per order
    fixed_interval: tuple[float, float]
    per_order_interval: tuple[float, float]
    level: float
    points: int
    budgets: tuple[float, ...]
    draws: tuple[np.ndarray, np.ndarray]  # every resample's (F, c)

    def capacity(self, budget: float) -> float:
        """Orders/s a shard tops out at on ``budget`` CPUs."""
        return (budget - self.fixed) / self.per_order

    def capacity_interval(self, budget: float) -> tuple[float, float]:
        with np.errstate(divide="ignore", invalid="ignore"):
            return quantiles((budget - self.draws[0]) / self.draws[1], self.level)

    def describe(self) -> str:
        f0, f1 = self.fixed_interval
        c0, c1 = self.per_order_interval
        return (f"cost model: a fixed {self.fixed * 1000:.1f} millicores [{f0 * 1000:.1f}, {f1 * 1000:.1f}] plus "
                f"{self.per_order * 1e6:.0f} µs of CPU per order [{c0 * 1e6:.0f}, {c1 * 1e6:.0f}] ({self.level:.0%} "
                f"intervals; least squares over {self.points} overloaded shard-steps at "
                f"{', '.join(f'{b:g}' for b in self.budgets)} CPU)")


def fit_cost_model(points: Sequence[CostPoint], level: float = 0.95, resamples: int = RESAMPLES,
                   seed: int = SEED) -> CostModel:
    """CPU per second = F + c x orders per second over overloaded steps at two or more budgets."""
    budgets = tuple(sorted({p.budget for p in points}))
    if len(budgets) < 2:
        raise ValueError(f"a cost model needs overloaded steps at two or more budgets, got {len(points)} "
                         f"at {', '.join(f'{b:g}' for b in budgets) or 'none'} CPU")
    x = np.asarray([p.orders_per_s for p in points])
    y = np.asarray([p.cpu_per_s for p in points])
    fixed, per_order = (float(v[0]) for v in _line(x, y, np.ones((1, len(x)))))
    if not per_order > 0:
        raise ValueError(f"overloaded steps give no positive cost per order (slope {per_order:.3g} CPU s per order): "
                         "a bigger budget did not buy more orders")
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(len(x), np.full(len(x), 1.0 / len(x)), size=resamples).astype(float)
    f_draws, c_draws = _line(x, y, weights)
    ok = np.isfinite(c_draws)
    f_draws, c_draws = f_draws[ok], c_draws[ok]
    return CostModel(fixed, per_order, quantiles(f_draws, level), quantiles(c_draws, level), level, len(points),
                     budgets, (f_draws, c_draws))


@dataclass(frozen=True)
class ShardSizing:
    shards: int
    budget: float  # CPUs per shard
    interval: tuple[float, float]

    @property
    def total(self) -> float:
        return self.shards * self.budget


@dataclass(frozen=True)
class Sizing:
    """The smallest CPU per shard at which N shards carry ``rate`` orders/s within the latency bar, per N."""

    rate: float
    level: float
    by_shards: tuple[ShardSizing, ...]
    basis: str  # what it was computed from, in words

    def for_shards(self, n: int) -> ShardSizing:
        return next(s for s in self.by_shards if s.shards == n)

    def check_budget(self, n: int) -> float:
        """The budget a check runs at: the interval's top, to the millicore above (met beyond doubt, if the model
        holds)."""
        return math.ceil(round(self.for_shards(n).interval[1] / BUDGET_STEP, 6)) * BUDGET_STEP

    def describe(self, n: int) -> str:
        one = self.for_shards(n)
        rows = "; ".join(f"N={s.shards}: {s.budget:.3f} CPU per shard [{s.interval[0]:.3f}, {s.interval[1]:.3f}], "
                         f"{s.total:.3f} in all" for s in self.by_shards)
        fewest = min(self.by_shards, key=lambda s: s.total)
        return (f"sizing: {self.rate:,.1f} orders/s with {n} shards needs {one.budget:.3f} CPU per shard "
                f"[{one.interval[0]:.3f}, {one.interval[1]:.3f}] ({self.level:.0%} interval); {rows}; the least CPU "
                f"in all at N={fewest.shards}; {self.basis}")


def shard_budget(rate: float, n: int, fixed, per_budget_capacity, sigma, kappa):
    """CPUs per shard at which ``n`` shards carry ``rate``: the one-shard capacity needed, rate x (1 + σ(n-1) +
    κn(n-1)) / n, bought at ``per_budget_capacity`` orders/s per CPU above the fixed cost. Works on arrays."""
    needed = rate * (1 + sigma * (n - 1) + kappa * n * (n - 1)) / n
    return fixed + needed / per_budget_capacity


def size_shards(rate: float, shards: Sequence[int], cost: CostModel, capacity_one: float, draws_one: np.ndarray,
                budget_one: float, sigma: float, kappa: float, usl_draws: dict[str, np.ndarray],
                level: float = 0.95, seed: int = SEED) -> Sizing:
    """The budget per shard for each N in ``shards``.

    One shard's capacity at a budget B is scaled from the measured one, ``capacity_one`` at ``budget_one``, by
    the cost model's shape: capacity(B) = capacity_one x (B - F) / (budget_one - F), so the measured capacity
    (through the gateway, within the latency bar) anchors it and the model only says how it moves with the
    budget. Intervals combine the resamples of the cost model, of the measured capacity and of the USL fit.
    """
    per_cpu = capacity_one / (budget_one - cost.fixed)
    rng = np.random.default_rng(seed)
    k = min(len(cost.draws[0]), len(draws_one), len(usl_draws["sigma"]))
    pick = [rng.permutation(len(d))[:k] for d in (cost.draws[0], draws_one, usl_draws["sigma"])]
    fixed_d = cost.draws[0][pick[0]]
    with np.errstate(divide="ignore", invalid="ignore"):
        per_cpu_d = draws_one[pick[1]] / (budget_one - fixed_d)
    sigma_d, kappa_d = usl_draws["sigma"][pick[2]], usl_draws["kappa"][pick[2]]
    rows = []
    for n in shards:
        budget = shard_budget(rate, n, cost.fixed, per_cpu, sigma, kappa)
        with np.errstate(divide="ignore", invalid="ignore"):
            draws = shard_budget(rate, n, fixed_d, per_cpu_d, sigma_d, kappa_d)
        rows.append(ShardSizing(n, float(budget), quantiles(np.where(np.isnan(draws), np.inf, draws), level)))
    basis = (f"one shard's capacity {capacity_one:,.0f} orders/s at {budget_one:g} CPU scaled by the cost model's "
             f"(B - {cost.fixed * 1000:.1f} millicores), the USL's sigma {sigma:.3f} and kappa {kappa:.4f}")
    return Sizing(rate, level, tuple(rows), basis)
