"""Headroom beyond the ASRs (marker ``capacity``): where does latency break?

Steps the arrival rate up until client p99 reaches 200 ms or errors reach
1 %, for one shard direct and for three shards through the gateway, and
reports the knee in orders/s and matches/min: the margin by which each ASR
holds, in one number each. Not part of the asr1/asr2 verdicts.
"""

from __future__ import annotations

import pytest

from fixtures.experiments import attach_charts
from matchlab.experiment.suite import Suite

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
