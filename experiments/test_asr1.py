"""ASR 1 — latency: p99 match latency < 200 ms at 1,000 matches/min on one shard (DESIGN.md §5-§6).

A1 warms up and calibrates fills per order; A2 is the primary measurement;
A3 repeats it from empty books at three depths; A4 freezes the broker mid-run
and reconciles every match against the events topic. Each criterion is its
own test; its failure message carries the observed value, the threshold and
the exact query.
"""

from __future__ import annotations

import pytest

from fixtures.experiments import attach_charts
from fixtures.experiments import check_criterion as check
from matchlab.experiment.suite import A3_DEPTHS, Suite

pytestmark = pytest.mark.asr1


@pytest.mark.order(1)
def test_a1_warm_up_and_calibration(suite: Suite, request):
    exp = suite.experiment("A1")
    attach_charts(request, "A1")
    load = exp.phases[0].load
    assert load.error_ratio < 0.01, f"A1 warm-up: {load.summary_line()}"
    assert exp.calibration["fills_per_order"] > 0.05


@pytest.mark.order(2)
def test_a2_normal_load_run(suite: Suite, request):
    exp = suite.experiment("A2")
    attach_charts(request, "A2")
    assert exp.phases[0].load.sent > 0


@pytest.mark.order(3)
def test_a2_p99_below_200ms(suite: Suite):
    check(suite, "A2", "p99 match latency (shard a)")


@pytest.mark.order(4)
def test_a2_p99_below_50ms_secondary(suite: Suite):
    check(suite, "A2", "p99 match latency, secondary bar")


@pytest.mark.order(5)
def test_a2_error_rate_below_1_percent(suite: Suite):
    check(suite, "A2", "error rate")


@pytest.mark.order(6)
def test_a3_depth_variation_run(suite: Suite, request):
    exp = suite.experiment("A3")
    attach_charts(request, "A3")
    assert len(exp.phases) == len(A3_DEPTHS)


@pytest.mark.order(7)
@pytest.mark.parametrize("depth", [f"{n}/{lv}" for n, lv in A3_DEPTHS])
def test_a3_p99_below_200ms_at_depth(suite: Suite, depth: str):
    check(suite, "A3", f"p99 match latency at depth {depth}")


@pytest.mark.order(8)
def test_a4_broker_outage_run(suite: Suite, request):
    exp = suite.experiment("A4")
    attach_charts(request, "A4")
    assert exp.phases[0].load.sent > 0


@pytest.mark.order(9)
def test_a4_latency_decoupled_from_broker(suite: Suite):
    check(suite, "A4", "p99 during broker outage vs baseline (relative rise beyond sampling error)")


@pytest.mark.order(10)
def test_a4_no_event_lost(suite: Suite):
    check(suite, "A4", "MATCH_EXECUTED events lost across the outage")
