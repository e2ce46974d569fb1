"""ASR 2 — scalability: >= 4,750 matches/min sustained with three shards (DESIGN.md §5-§6).

B1 measures one shard's baseline through the gateway; B2 is the primary
sustained run over twelve symbols; B3 ramps up to 5,000/min and holds; B4
sends 80 % of the flow to one symbol; B5 checks that shard a's latency does
not move when shard b's load rises. Memory is trend-tested over B2-B3.
"""

from __future__ import annotations

import pytest

from fixtures.experiments import attach_charts
from fixtures.experiments import check_criterion as check
from matchlab.experiment.suite import Suite

pytestmark = pytest.mark.asr2


@pytest.mark.order(21)
def test_b1_baseline_run(suite: Suite, request):
    exp = suite.experiment("B1")
    attach_charts(request, "B1")
    assert exp.phases[0].load.error_ratio < 0.01, exp.phases[0].load.summary_line()


@pytest.mark.order(22)
def test_b2_peak_sustained_run(suite: Suite, request):
    exp = suite.experiment("B2")
    attach_charts(request, "B2")
    assert exp.phases[0].load.sent > 0


@pytest.mark.order(23)
def test_b2_sustains_4750_matches_per_minute(suite: Suite):
    check(suite, "B2", "aggregate >= 4,750 matches/min sustained (longest stretch)")


@pytest.mark.order(24)
def test_b2_linear_scaling(suite: Suite):
    check(suite, "B2", "linear scaling: throughput(3) / (3 x throughput(1))")


@pytest.mark.order(25)
@pytest.mark.parametrize("shard", ["a", "b", "c"])
def test_b2_p99_below_200ms_per_shard(suite: Suite, shard: str):
    check(suite, "B2", f"p99 match latency at peak, shard {shard}")


@pytest.mark.order(26)
def test_b2_error_rate_below_1_percent(suite: Suite):
    check(suite, "B2", "error rate")


@pytest.mark.order(27)
def test_b3_ramp_run(suite: Suite, request):
    exp = suite.experiment("B3")
    attach_charts(request, "B3")
    assert [p.name for p in exp.phases] == ["ramp", "hold"]


@pytest.mark.order(28)
def test_b3_holds_5000_after_the_ramp(suite: Suite):
    check(suite, "B3", "matches/min during the 5,000/min hold after the ramp")


@pytest.mark.order(29)
@pytest.mark.parametrize("shard", ["a", "b", "c"])
def test_b2_b3_memory_has_no_monotonic_growth(suite: Suite, shard: str):
    check(suite, "B3", f"no monotonic memory growth, shard {shard} (relative growth)")


@pytest.mark.order(30)
def test_b4_hot_symbol_run(suite: Suite, request):
    suite.experiment("B4")
    attach_charts(request, "B4")


@pytest.mark.order(31)
def test_b4_hot_shard_p99_below_200ms(suite: Suite):
    check(suite, "B4", "p99 match latency of the hot shard a (80 % of orders)")


@pytest.mark.order(32)
def test_b5_isolation_run(suite: Suite, request):
    exp = suite.experiment("B5")
    attach_charts(request, "B5")
    assert [p.name for p in exp.phases] == ["b-idle", "b-loaded"]


@pytest.mark.order(33)
def test_b5_shard_a_isolated_from_shard_b_load(suite: Suite):
    check(suite, "B5", "shard a p99 change when shard b's load rises (beyond sampling error)")
