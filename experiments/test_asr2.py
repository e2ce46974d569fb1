"""ASR 2 — scalability: >= 4,750 matches/min sustained with three shards (docs/internals/design.md §5-§6).

B1 measures one shard's baseline through the gateway; B2 is the primary run
over twelve symbols (steered to the match rate during warm-up, then open
loop); B3 ramps up to 5,000/min and holds; B4 sends 80 % of the flow to one
symbol; B5 checks that shard a's latency does not move when shard b's load
rises. Memory is trend-tested over B2-B3. Each registry criterion is its own
test (by id); an INCONCLUSIVE one is an xfail that carries its reason.
"""

from __future__ import annotations

import pytest

from fixtures.experiments import CHARTS_KEY, attach_charts
from fixtures.experiments import check_criterion as check
from fixtures.options import harness_options
from matchlab.experiment.profiles import QUICK
from matchlab.experiment.registry import ASR2, expected
from matchlab.experiment.suite import Suite

pytestmark = pytest.mark.asr2


def ids(experiment: str) -> list[str]:
    return [c.id for c in expected(QUICK, ASR2) if c.experiment == experiment]


def assert_load_left_on_schedule(exp) -> None:
    for phase in exp.phases:
        assert phase.load.sent >= 0.95 * phase.load.scheduled, f"{exp.id}/{phase.name}: {phase.load.summary_line()}"


@pytest.mark.order(21)
def test_b1_baseline_run(suite: Suite, request):
    exp = suite.experiment("B1")
    attach_charts(request, "B1")
    assert exp.phases[0].load.error_ratio < 0.01, exp.phases[0].load.summary_line()


@pytest.mark.order(22)
def test_b2_peak_sustained_run(suite: Suite, request):
    exp = suite.experiment("B2")
    attach_charts(request, "B2")
    assert_load_left_on_schedule(exp)
    phase = exp.phases[0]
    assert phase.start < phase.marks["measured"] < phase.end and phase.extra["fixed_order_rate"] > 0, phase.marks


@pytest.mark.order(23)
@pytest.mark.parametrize("criterion", ids("B2"))
def test_b2(suite: Suite, criterion: str):
    check(suite, criterion)


@pytest.mark.order(27)
def test_b3_ramp_run(suite: Suite, request):
    exp = suite.experiment("B3")
    attach_charts(request, "B3")
    assert [p.name for p in exp.phases] == ["ramp", "hold"]
    assert_load_left_on_schedule(exp)


@pytest.mark.order(28)
@pytest.mark.parametrize("criterion", ids("B3"))
def test_b3(suite: Suite, criterion: str):
    check(suite, criterion)


@pytest.mark.order(30)
def test_b4_hot_symbol_run(suite: Suite, request):
    exp = suite.experiment("B4")
    attach_charts(request, "B4")
    assert_load_left_on_schedule(exp)


@pytest.mark.order(31)
@pytest.mark.parametrize("criterion", ids("B4"))
def test_b4(suite: Suite, criterion: str):
    check(suite, criterion)


@pytest.mark.order(32)
def test_b5_isolation_run(suite: Suite, request):
    exp = suite.experiment("B5")
    attach_charts(request, "B5")
    log = exp.cycles
    loaded = log.phases(exp, True)
    assert loaded and len(log.phases(exp, False)) == len(loaded) + 1, [a.phase for a in log.arms]
    assert all(p.name.startswith("b-loaded-") for p in loaded) and log.looks and log.stopped, log
    assert_load_left_on_schedule(exp)


@pytest.mark.order(33)
@pytest.mark.parametrize("criterion", ids("B5"))
def test_b5(suite: Suite, criterion: str):
    check(suite, criterion)


@pytest.mark.order(34)
def test_s1_capacity_steps_run(suite: Suite, request):
    exp = suite.experiment("S1")
    steps = exp.extra["steps"]
    configs = {st["config"] for st in steps}
    assert configs == {f"N={n}" for n in range(1, harness_options(request.config).max_shards + 1)}  # 1..K
    rounds = [st for st in steps if st["stage"].startswith("round")]
    assert rounds and {st["config"] for st in rounds} >= {"N=1", f"N={max(st['shards'] for st in steps)}"}
    for config in sorted(configs, key=lambda c: int(c.split("=")[1])):
        suite.progress(f"[S1] {config}: " + ", ".join(f"{st['rate']:.0f}/s {'ok' if st['passed'] else 'FAIL'}"
                                                      for st in steps if st["config"] == config))
    for cap in exp.extra["capacities"]:
        suite.progress(f"[S1] {cap['config']}: capacity {cap['estimate'] and round(cap['estimate'])} orders/s, "
                       f"interval {cap['interval'] and [f'{v:,.0f}' for v in cap['interval']]}; at it: {cap['bottleneck']}")
    suite.progress(f"[S1] {len(steps)} steps in {exp.extra['elapsed_s']:.0f} s ({exp.extra['elapsed_s'] / 60:.1f} min); "
                   f"{exp.extra['stopped']}")
    chart = next(c for c in request.config.stash.get(CHARTS_KEY, {}).get("S1", []) if c["title"].startswith("Capacity"))
    assert chart["series"] == len(configs), chart["title"]  # every configuration's steps drawn


@pytest.mark.order(35)
@pytest.mark.parametrize("criterion", ids("S1"))
def test_s1(suite: Suite, criterion: str):
    check(suite, criterion)
