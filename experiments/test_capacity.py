"""Headroom beyond the ASRs (marker ``capacity``): where does latency break?

Steps the arrival rate up until client p99 reaches 200 ms or errors reach
1 %, for one shard direct and for three shards through the gateway, and
reports the knee in orders/s and matches/min: the margin by which each ASR
holds, in one number each. Not part of the asr1/asr2 verdicts.

Then the CPU budgets S1 relies on, tested on the real stack under cgroup
quotas: what a shard's CPU buys, a fixed cost per second and a cost per
order, predicts its knee at each of three budgets (C3); a gateway throttled
below one shard's needs makes the scaling verdict FAIL, naming the gateway
(C4); and the smallest CPU per shard that the cost model and S1's USL say
carries ASR 2's rate does carry it, in one run at that budget (C5, which
runs C3 and S1 first). They need root and a writable cgroup cpu controller,
and skip naming that prerequisite where it is missing.
"""

from __future__ import annotations

import pytest

from fixtures.experiments import attach_charts
from matchlab.experiment.scaling_measure import scaling_verdict
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


# C3's check of the cost model: the knee measured at each budget (the 50 % point of its steps' pass/fail, with
# its interval) meets the interval of what the model, fitted to the overloaded steps' CPU and throughput at all
# the budgets, predicts. A budget not in force would leave the knees unmoved (no positive cost per order, or a
# fixed cost as large as the budget); a knee set by anything but the shard's CPU would sit away from its
# prediction.


@pytest.fixture
def cgroup_budgets() -> None:
    why = CpuBudgets("probe").available()
    if why:
        pytest.skip(f"prerequisite missing: CPU budgets need root and a writable cgroup cpu controller: {why}")


def test_the_cost_model_predicts_the_knee_at_each_budget(cgroup_budgets, suite: Suite):
    exp = suite.experiment("C3")
    assert exp.extra["enforced"], exp.extra["not_enforced"]
    model = exp.extra["cost_model"]
    assert "why_not" not in model, model.get("why_not")
    suite.progress(f"[C3] {model['describe']}")
    for cap in exp.extra["capacities"]:
        predicted, low, high = model["predicted"][cap["config"]]
        suite.progress(f"[C3] shard a at {cap['config']}: knee {cap['estimate'] or 0:,.0f} orders/s "
                       f"(interval {[f'{v:,.0f}' for v in cap['interval'] or ()]}, {cap['passes']} of {cap['steps']} "
                       f"steps passed); the model predicts {predicted:,.0f} [{low:,.0f}, {high:,.0f}]")
        assert cap["estimate"], f"shard a at {cap['config']}: no knee: {cap}"
        # Judged on the intervals, not the point: near the smallest budget the prediction hangs on the fixed
        # cost's estimate (a CI run read 499 measured against 355 predicted, intervals [389, 596] and
        # [-402, 620]). A knee the model cannot explain lies outside its interval, and this fails.
        measured_low, measured_high = cap["interval"] or (cap["estimate"], cap["estimate"])
        assert measured_low <= high and low <= measured_high, (
            f"shard a at {cap['config']}: knee {cap['estimate']:,.0f} orders/s [{measured_low:,.0f}, "
            f"{measured_high:,.0f}], the cost model predicts {predicted:,.0f} [{low:,.0f}, {high:,.0f}]: apart")
    overloaded = [st for st in exp.extra["steps"] if st["overloaded"]]
    # Its own budget, and no more, set the knees: the shard saturated but held to it by the quota.
    assert overloaded and all(0.85 <= st["cpu_share"]["me-shard-a"] <= 1.1 for st in overloaded), [
        (st["rate"], st["shard_cpu"], st["cpu_share"]) for st in overloaded]
    assert model["fixed"] < min(cap["shard_cpu"] for cap in exp.extra["capacities"]) / 2


def test_a_throttled_gateway_fails_scaling_naming_the_gateway(cgroup_budgets, suite: Suite):
    exp = suite.experiment("C4")
    verdict = scaling_verdict(suite.context(Topology.MULTI), exp)
    suite.progress(f"[C4] {verdict.message()}")
    assert exp.extra["enforced"], exp.extra["not_enforced"]
    assert verdict.status is Status.FAIL, verdict.message()
    three = next(c for c in exp.extra["capacities"] if c["shards"] == 3)
    assert three["bottleneck"].startswith("edge-gateway at"), three["bottleneck"]
    assert "N=3: " in verdict.detail and "at the capacity: edge-gateway at" in verdict.detail.split("N=3: ")[1]


def test_the_sizing_answer_carries_asr2s_rate_at_its_budget(cgroup_budgets, suite: Suite):
    exp = suite.experiment("C5")
    check = exp.extra["check"]
    for note in exp.notes[-2:]:
        suite.progress(f"[C5] {note}")
    assert exp.extra["enforced"], exp.extra["not_enforced"]
    assert check["passed"], f"{exp.extra['sizing']}; at {exp.extra['check_budget']:.3f} CPU per shard: {check}"
