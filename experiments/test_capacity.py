"""Headroom beyond the ASRs (marker ``capacity``): where does latency break?

Steps the arrival rate up until client p99 reaches 200 ms or errors reach
1 %, for one shard direct and for three shards through the gateway, and
reports the knee in orders/s and matches/min: the margin by which each ASR
holds, in one number each. Not part of the asr1/asr2 verdicts.

Then the CPU budgets S1 relies on, tested on the real stack under cgroup
quotas: a shard's knee halves with its budget (C3), and a gateway throttled
below one shard's needs makes the scaling verdict FAIL, naming the gateway
(C4). Both need root and a writable cgroup cpu controller, and skip naming
that prerequisite where it is missing.
"""

from __future__ import annotations

import pytest

from fixtures.experiments import attach_charts
from matchlab.experiment.searches import scaling_verdicts
from matchlab.experiment.suite import Suite
from matchlab.observe.verdicts import Status
from matchlab.stack.cpu_budget import CpuBudgets
from matchlab.stack.spec import Topology

pytestmark = pytest.mark.capacity


def report(suite: Suite, exp_id: str, asr_bar_per_min: float) -> dict:
    exp = suite.experiment(exp_id)
    steps = exp.extra["steps"]
    for st in steps:
        suite.progress(
            f"[{exp_id}] {st['order_rate']:>5} orders/s offered: achieved {st['achieved']:7.1f}/s, client p99 "
            f"{st['p99_ms']:8.2f} ms, errors {st['error_ratio']:.2%}, {st['matches_per_min']:9,.0f} matches/min"
        )
    knee = exp.extra["knee"]
    assert knee is not None, f"{exp_id}: even the lowest step ({steps[0]}) broke the 200 ms / 1 % bar"
    suite.progress(
        f"[{exp_id}] knee: {knee['order_rate']} orders/s = {knee['matches_per_min']:,.0f} matches/min "
        f"({knee['matches_per_min'] / asr_bar_per_min:.1f}x the ASR bar); p99 < 50 ms up to "
        f"{(exp.extra['knee_p99_below_50ms'] or {}).get('order_rate', 0)} orders/s"
        + ("" if exp.extra["stopped_by_bar"] else " (the search ran out of steps before the bar broke)")
    )
    return knee


def test_capacity_one_shard_direct(suite: Suite, request):
    knee = report(suite, "C1", 1000)
    attach_charts(request, "C1")
    assert knee["matches_per_min"] > 0


def test_capacity_three_shards_through_gateway(suite: Suite, request):
    knee = report(suite, "C2", 4750)
    attach_charts(request, "C2")
    assert knee["matches_per_min"] > 0


# The bar is "a halved budget halves the knee, within 15 %". Only its lower side is asserted.
# A shard's CPU per order falls as its rate rises (orders that arrive together share wake-ups, fsyncs
# and warm caches, and on this machine a wake-up costs more than an order's own work), so halving a
# budget more than halves the knee: 2.0-2.7x at 0.2 / 0.4 CPU in seven runs here, 2.1-4.2x at 0.1 / 0.2
# (docs/experiments/capacity.md, C3). What the test must catch is a budget not in force (the knee would
# not move) or a knee set by something else (it would move less). Each budget is searched twice and
# judged by its mean knee: one search's knee moved by up to a quarter between runs.
HALVING_TOLERANCE = 0.15


@pytest.fixture
def cgroup_budgets() -> None:
    why = CpuBudgets("probe").available()
    if why:
        pytest.skip(f"prerequisite missing: CPU budgets need root and a writable cgroup cpu controller: {why}")


def test_a_halved_shard_budget_halves_its_knee(cgroup_budgets, suite: Suite):
    exp = suite.experiment("C3")
    assert exp.extra["enforced"], exp.extra["not_enforced"]
    knees = {}
    for cpu, cap in exp.extra["knees_by_shard_cpu"].items():
        suite.progress(f"[C3] shard a at {cpu} CPU: knee {cap['knee']:.0f} orders/s (passes "
                       f"{', '.join(str(round(p['knee'] or 0)) for p in cap['passes'])}); at the knee: {cap['bottleneck']}")
        assert cap["knee"] and not cap["exhausted"], f"shard a at {cpu} CPU: no knee found: {cap}"
        for p in cap["passes"]:
            first_bad = min((st for st in p["steps"] if not st["passed"] and st["rate"] > p["knee"]),
                            key=lambda st: st["rate"])
            share = first_bad["cpu_share"]["me-shard-a"]
            # Its own budget, and no more, set the knee: saturated (>= 90 %) but held to it by the quota.
            assert p["bottleneck"].startswith("me-shard-a at") and share <= 1.1, f"shard a at {cpu} CPU: {p}"
        knees[float(cpu)] = cap["knee"]
    half, full = sorted(knees)
    ratio, want = knees[full] / knees[half], full / half
    suite.progress(f"[C3] knee ratio {ratio:.2f} for a budget ratio of {want:g}")
    assert ratio >= want * (1 - HALVING_TOLERANCE), (
        f"knee {knees[full]:.0f} orders/s at {full} CPU vs {knees[half]:.0f} at {half} CPU: ratio {ratio:.2f}, "
        f"below {want:g} - {HALVING_TOLERANCE:.0%}")


def test_a_throttled_gateway_fails_scaling_naming_the_gateway(cgroup_budgets, suite: Suite):
    exp = suite.experiment("C4")
    (verdict,) = scaling_verdicts(suite.context(Topology.MULTI), exp)
    suite.progress(f"[C4] {verdict.message()}")
    assert exp.extra["enforced"], exp.extra["not_enforced"]
    assert verdict.status is Status.FAIL, verdict.message()
    three = next(c for c in exp.extra["capacities"] if c["shards"] == 3)
    assert three["bottleneck"].startswith("edge-gateway at"), three["bottleneck"]
    assert "N=3: " in verdict.detail and "at the knee: edge-gateway at" in verdict.detail.split("N=3: ")[1]
