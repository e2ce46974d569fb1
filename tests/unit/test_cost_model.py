"""The cost model behind the budgets (a fixed cost per second, a cost per order) and the sizing arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from matchlab.experiment.cost_model import (
    CostModel,
    CostPoint,
    cost_points,
    fit_cost_model,
    shard_budget,
    size_shards,
)
from matchlab.experiment.scaling import Step

FIXED, PER_ORDER = 0.02, 160e-6  # 20 millicores, 160 µs an order


def overloaded(budget: float, noise: float = 0.0, rng: np.random.Generator | None = None) -> Step:
    """An overloaded step of shard a at ``budget``: all of it used, (budget - F) / c orders/s got through."""
    top = (budget - FIXED) / PER_ORDER * (1 + (rng.normal(0, noise) if rng is not None else 0.0))
    return Step(top * 1.2, False, 0.8, 0.0, 900.0, 500.0, shards=1, shard_cpu=budget, seconds=10.0,
                orders={"a": top * 10}, cpu_used={"me-shard-a": budget * 0.99, "edge-gateway": 0.1})


def test_the_model_recovers_a_fixed_cost_and_a_cost_per_order():
    rng = np.random.default_rng(2)
    steps = [overloaded(b, 0.02, rng) for b in (0.1, 0.2, 0.4) for _ in range(6)]
    steps += [Step(500.0, True, 1, 0, 5, 5, shards=1, shard_cpu=0.2, seconds=8.0, orders={"a": 4000},
                   cpu_used={"me-shard-a": 0.19})]  # a passing step: not a point (it shows no top)
    points = cost_points(steps)
    assert len(points) == 18 and all(p.cpu_per_s == pytest.approx(p.budget * 0.99) for p in points)
    model = fit_cost_model(points)
    assert model.fixed == pytest.approx(FIXED * 0.99, abs=0.006) and model.per_order == pytest.approx(
        PER_ORDER * 0.99, rel=0.05)
    assert model.fixed_interval[0] <= model.fixed <= model.fixed_interval[1]
    assert model.per_order_interval[0] < PER_ORDER < model.per_order_interval[1] * 1.02
    # Affine in the budget: twice the budget, more than twice the capacity (the fixed cost is paid once).
    assert model.capacity(0.4) > 2 * model.capacity(0.2)
    low, high = model.capacity_interval(0.2)
    assert low < model.capacity(0.2) < high
    assert "millicores" in model.describe() and "µs of CPU per order" in model.describe()


def test_a_cost_model_needs_two_budgets_and_a_positive_cost():
    with pytest.raises(ValueError, match="two or more budgets"):
        fit_cost_model([CostPoint(0.2, 1000, 0.2), CostPoint(0.2, 1100, 0.2)])
    with pytest.raises(ValueError, match="no positive cost per order"):
        fit_cost_model([CostPoint(0.2, 1000, 0.2), CostPoint(0.4, 900, 0.4)])


def test_the_budget_a_rate_needs_is_the_fixed_cost_plus_the_capacity_it_takes():
    # 3 shards, 80 orders/s, sigma 0.1, kappa 0: one shard must carry 80 x 1.2 / 3 = 32 orders/s.
    per_cpu = 5000.0  # orders/s per CPU above the fixed cost
    assert shard_budget(80.0, 3, 0.02, per_cpu, 0.1, 0.0) == pytest.approx(0.02 + 32 / 5000)
    assert shard_budget(80.0, 1, 0.02, per_cpu, 0.1, 0.3) == pytest.approx(0.02 + 80 / 5000)  # N=1: no USL cost
    arrays = shard_budget(80.0, 2, np.array([0.01, 0.03]), np.array([4000.0, 6000.0]), 0.0, 0.0)
    assert arrays == pytest.approx([0.01 + 40 / 4000, 0.03 + 40 / 6000])


def model(fixed_draws: np.ndarray) -> CostModel:
    return CostModel(0.02, 160e-6, (0.015, 0.025), (150e-6, 170e-6), 0.95, 10, (0.2, 0.4),
                     (fixed_draws, np.full(len(fixed_draws), 160e-6)))


def test_the_sizing_answer_per_shard_count_and_its_interval():
    rng = np.random.default_rng(4)
    cost = model(rng.normal(0.02, 0.002, 2000))
    one = rng.normal(1100.0, 30.0, 2000)
    usl = {"sigma": np.full(2000, 0.05), "kappa": np.zeros(2000)}
    sizing = size_shards(80.0, range(1, 4), cost, 1100.0, one, 0.2, 0.05, 0.0, usl)
    three = sizing.for_shards(3)
    per_cpu = 1100.0 / (0.2 - 0.02)
    assert three.budget == pytest.approx(0.02 + 80 * 1.1 / 3 / per_cpu)
    assert three.interval[0] < three.budget < three.interval[1]
    assert sizing.for_shards(1).budget > three.budget and sizing.for_shards(1).total < three.total
    assert sizing.check_budget(3) >= three.interval[1] and sizing.check_budget(3) * 1000 == pytest.approx(
        round(sizing.check_budget(3) * 1000))
    text = sizing.describe(3)
    assert "80.0 orders/s with 3 shards needs" in text and "the least CPU in all at N=1" in text
