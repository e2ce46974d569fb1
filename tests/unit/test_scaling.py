"""Capacity search and the scaling verdict: knees found within 5 %, bottlenecks named, budgets required."""

from __future__ import annotations

import pytest

from matchlab.experiment import scaling
from matchlab.experiment.criteria import Context
from matchlab.experiment.profiles import QUICK
from matchlab.experiment.record import ExperimentRecord
from matchlab.experiment.searches import scaling_verdicts
from matchlab.observe.verdicts import Status
from matchlab.topology import SCALING_CPU_PER_2_CORES

BUDGETS = scaling.Budgets(0.2, 0.5)


def fake_system(knee: float, saturating: str = "me-shard-a"):
    """A system that answers everything below ``knee`` orders/s and falls behind above it."""
    def step(rate: float) -> scaling.Step:
        ok = rate <= knee
        share = {"me-shard-a": 0.5 * rate / knee, "edge-gateway": 0.4 * rate / knee}
        share[saturating] = rate / knee
        return scaling.Step(rate, ok, 1.0 if ok else 0.8, 0.0, 10.0 if ok else 900.0, 5.0, share,
                            {saturating: 0.7} if not ok else {}, 0.0, 0.2, 0.5)
    return step


@pytest.mark.parametrize("precision", [scaling.KNEE_PRECISION, 0.025])
@pytest.mark.parametrize("knee", [137.0, 440.0, 1234.0])
def test_the_knee_is_found_within_the_precision(knee, precision):
    found, steps, exhausted = scaling.knee_search(fake_system(knee), 100.0, precision=precision)
    assert not exhausted and found is not None and knee * (1 - precision) <= found <= knee, (found, [s.rate for s in steps])
    assert len(steps) <= scaling.MAX_STEPS


def test_a_system_that_fails_at_once_has_no_knee():
    found, steps, _ = scaling.knee_search(fake_system(10.0), 100.0)
    assert found is None and not any(s.passed for s in steps)


def test_the_bottleneck_names_the_saturated_process_and_its_budget():
    failing = fake_system(100.0, saturating="edge-gateway")(150.0)
    text = scaling.bottleneck(failing, BUDGETS)
    assert text.startswith("edge-gateway at 150% of its 0.5-CPU budget") and "throttled in 70% of periods" in text
    lagging = scaling.Step(150, False, 0.7, 0.0, 900, None, {}, {}, 0.0, 1.0, 250.0)
    assert scaling.bottleneck(lagging, BUDGETS).startswith("the load generator itself")


def capacities(knees: dict[int, float | list[float]], saturating: dict[int, str],
               enforced: bool = True) -> ExperimentRecord:
    """An S1 record whose every pass found its knee and failed 4 % above it."""
    exp = ExperimentRecord("S1", "scaling", "ASR 2", "gateway", "")
    exp.extra.update(budgets=BUDGETS.describe(), enforced=enforced, not_enforced="" if enforced else "no cgroups")
    exp.extra["capacities"] = [
        scaling.Capacity(n, [scaling.Pass(k, k * 1.04, [], scaling.bottleneck(fake_system(k, saturating[n])(k * 1.5),
                                                                             BUDGETS))
                             for k in (ks if isinstance(ks, list) else [ks])]).to_dict()
        for n, ks in knees.items()]
    return exp


def test_linear_capacities_pass_and_the_model_explains():
    (v,) = scaling_verdicts(Context(None, "run", QUICK), capacities({1: 400, 2: 790, 3: 1170},
                                                                  dict.fromkeys((1, 2, 3), "me-shard-a")))
    assert v.status is Status.PASS and v.observed == pytest.approx(0.975) and "USL" in v.detail
    # The interval: the lowest knee of N=3 over the highest ceiling of N=1, and the other way round.
    assert "interval [0.938, 1.014] from 1 pass" in v.detail and v.resolving_power == pytest.approx((1.014 - 0.9375) / 2,
                                                                                                    abs=1e-3)


def test_a_throttled_gateway_fails_scaling_and_is_named():
    (v,) = scaling_verdicts(Context(None, "run", QUICK), capacities(
        {1: 400, 2: 600, 3: 610}, {1: "me-shard-a", 2: "edge-gateway", 3: "edge-gateway"}))
    assert v.status is Status.FAIL and v.observed == pytest.approx(610 / 1200)
    assert "N=3: 610 orders/s; at the knee: edge-gateway at 150% of its 0.5-CPU budget" in v.detail


def busy_machine_step(rate: float, machine_busy: float) -> scaling.Step:
    """A failing step where no budgeted service is saturated (shards at 70 %, the gateway at 50 %)."""
    return scaling.Step(rate, False, 0.9, 0.0, 400.0, 20.0, {"me-shard-a": 0.7, "edge-gateway": 0.5}, {}, 0.0, 0.2,
                        5.0, machine_busy, {"broker": 0.31})


def test_a_knee_set_by_the_busy_machine_is_named_and_makes_scaling_inconclusive():
    step = busy_machine_step(1500, 0.97)
    assert scaling.foreign_limit(step) == scaling.LIMITED_BY_MACHINE
    text = scaling.bottleneck(step, BUDGETS)
    assert text.startswith("no process saturated (busiest me-shard-a at 70%") and "cores 97% busy" in text
    assert "broker 0.31 CPU" in text and text.endswith("shared with processes outside the budgets")
    exp = capacities({1: 400, 2: 800, 3: 1200}, dict.fromkeys((1, 2, 3), "me-shard-a"))
    three = exp.extra["capacities"][2]
    three["passes"][0].update(bottleneck=text, foreign_limit=scaling.foreign_limit(step))
    (v,) = scaling_verdicts(Context(None, "run", QUICK), exp)
    assert v.status is Status.INCONCLUSIVE and "the machine's cores ran out before the system under test" in v.detail


def test_a_knee_below_a_saturated_machine_is_the_systems():
    # The machine had cores to spare: the knee came from a shared stage of the system, a real finding.
    step = busy_machine_step(1500, 0.6)
    assert scaling.foreign_limit(step) == ""
    assert scaling.bottleneck(step, BUDGETS).endswith("a shared stage: the broker or the network path")
    saturated = scaling.Step(1500, False, 0.9, 0.0, 400.0, 20.0, {"me-shard-a": 0.97}, {}, 0.0, 0.2, 5.0, 0.99)
    assert scaling.foreign_limit(saturated) == ""  # a shard at its budget set it, however busy the machine


def test_passes_that_disagree_across_the_bar_are_inconclusive():
    # What two CI runs measured one search each: 585/1,898 (ratio 1.08) and 554/1,455 (0.88).
    (v,) = scaling_verdicts(Context(None, "run", QUICK), capacities(
        {1: [585, 554], 2: [1202, 1076], 3: [1898, 1455]}, dict.fromkeys((1, 2, 3), "me-shard-a")))
    assert v.status is Status.INCONCLUSIVE and "straddles 0.9" in v.detail
    assert v.observed == pytest.approx((1898 + 1455) / 2 / (3 * (585 + 554) / 2))
    assert "N=3: 1,676 orders/s (passes: 1,898, 1,455)" in v.detail and "from 2 passes" in v.detail
    assert v.resolving_power > 0.1


@pytest.mark.parametrize("one, three, status", [([400, 410], [1200, 1180], Status.PASS),
                                                ([400, 410], [900, 950], Status.FAIL)])
def test_passes_that_agree_decide(one, three, status):
    (v,) = scaling_verdicts(Context(None, "run", QUICK), capacities(
        {1: one, 2: [800], 3: three}, dict.fromkeys((1, 2, 3), "me-shard-a")))  # N=2: searched once, as S1 does
    assert v.status is status and "from 2 passes" in v.detail, v.detail


def test_s1_confirms_only_the_capacities_its_ratio_reads_and_reverses_the_second_pass():
    from matchlab.experiment.runner import Route
    from matchlab.experiment.searches import S1_CONFIRMED, S1_PASSES, search_order

    routes = [Route(tuple("abcdef"[:n]), via_gateway=True) for n in range(1, 5)]
    order = [(k, len(route.shards)) for k, route in search_order(routes, S1_PASSES, S1_CONFIRMED)]
    assert order == [(0, 1), (0, 2), (0, 3), (0, 4), (1, 3), (1, 1)]
    everything = [(k, len(route.shards)) for k, route in search_order(routes, 2)]
    assert everything == [(0, 1), (0, 2), (0, 3), (0, 4), (1, 4), (1, 3), (1, 2), (1, 1)]
    assert [k for k, _ in search_order(routes[:1], 1, S1_CONFIRMED)] == [0]


def test_only_the_capacities_a_verdict_reads_are_bisected_finer():
    from matchlab.experiment.runner import Route
    from matchlab.experiment.searches import S1_CONFIRMED, S1_PRECISION, search_precision

    one, two = Route(("a",), via_gateway=True), Route(("a", "b"), via_gateway=True)
    assert search_precision(one, S1_PRECISION, S1_CONFIRMED) == S1_PRECISION < scaling.KNEE_PRECISION
    assert search_precision(two, S1_PRECISION, S1_CONFIRMED) == scaling.KNEE_PRECISION
    assert search_precision(two, S1_PRECISION) == S1_PRECISION  # no confirm: every route is read


def test_a_pass_without_a_ceiling_leaves_the_capacity_unbounded():
    cap = scaling.Capacity(1, [scaling.Pass(400, 420, [], ""), scaling.Pass(500, None, [], "")])
    assert cap.exhausted and cap.bounds is None and cap.knee == 450
    assert scaling.Capacity(1, [scaling.Pass(None, 100, [], "")]).knee is None


@pytest.mark.parametrize("knee", [137.0, 440.0, 1234.0])
def test_a_pass_brackets_the_true_knee(knee):
    system = fake_system(knee)
    found, steps, _ = scaling.knee_search(system, 100.0)
    first = scaling.Pass.from_steps(found, steps, BUDGETS)
    assert first.knee <= knee < first.ceiling <= first.knee * (1 + scaling.KNEE_PRECISION) + 1e-9
    again, steps, _ = scaling.knee_search(system, found * scaling.CONFIRM_START, scaling.CONFIRM_GROWTH)
    second = scaling.Pass.from_steps(again, steps, BUDGETS)
    assert second.knee <= knee < second.ceiling and len(steps) < len(first.steps) + 2
    assert second.bottleneck.startswith("me-shard-a at")


def test_without_enforced_budgets_scaling_is_inconclusive():
    (v,) = scaling_verdicts(Context(None, "run", QUICK), capacities({1: 400, 2: 800, 3: 1200},
                                                                  dict.fromkeys((1, 2, 3), "me-shard-a"), False))
    assert v.status is Status.INCONCLUSIVE and "not enforced" in v.detail


def test_the_scaling_chart_draws_the_capacities_against_the_bars():
    from matchlab.reporting.charts import scaling_chart

    svg, drawn = scaling_chart(capacities({1: [400, 380], 2: 700, 3: 900}, dict.fromkeys((1, 2, 3), "me-shard-a")))
    assert drawn == 1 and 'id="series-1"' in svg and "0.9 x linear" in svg and "USL (sigma" in svg
    assert 'id="capacity-ranges' in svg and "range over passes" in svg


@pytest.mark.parametrize("cores", [1, 2, 4, 8])
@pytest.mark.parametrize("k", [3, 4, 5, 6])
def test_per_shard_budgets_shrink_with_k_so_n_equals_k_fits_the_machine(cores, k):
    budgets = scaling.Budgets.for_machine(k, cores)
    # N = K, every shard and the gateway busy, still leaves cores for the load generator, broker and Prometheus.
    assert budgets.total(k) <= 0.6 * cores, budgets.describe()
    # The per-shard budget is chosen from K alone: shard a at N = 1 gets what each of the K shards gets at N = K.
    per_n = {n: {budgets.for_service(f"me-shard-{chr(ord('a') + i)}") for i in range(n)} for n in range(1, k + 1)}
    assert all(v == {budgets.shard_cpu} for v in per_n.values()), per_n
    assert budgets.shard_cpu * k <= SCALING_CPU_PER_2_CORES["shards"] * cores / 2 + 1e-9


def test_budget_arithmetic_on_two_cores():
    assert scaling.Budgets.for_machine(3, 2) == scaling.Budgets(0.2, 0.5, 3, 2)  # the standard three: unchanged
    six = scaling.Budgets.for_machine(6, 2)
    assert (six.shard_cpu, six.gateway_cpu) == (0.1, 0.5) and six.total(6) == pytest.approx(1.1)
    assert "0.1 CPU per shard" in six.describe() and "N = 1..6" in six.describe() and "1.1 of 2 cores" in six.describe()
    with pytest.raises(ValueError, match="at least one shard"):
        scaling.Budgets.for_machine(0, 2)


@pytest.mark.parametrize("cpus, period, quota", [(0.2, 10_000, 2_000), (0.1, 10_000, 1_000), (0.05, 20_000, 1_000),
                                                 (1.5, 10_000, 15_000)])
def test_a_small_budget_lengthens_the_period_instead_of_rounding_up(cpus, period, quota):
    from matchlab.stack.cpu_budget import quota_for

    assert quota_for(cpus) == (period, quota)


def test_the_report_states_the_budgets_s1_used():
    from matchlab.experiment.record import RunRecord
    from matchlab.reporting.report import render_report

    stated = "S1: " + scaling.Budgets.for_machine(4, 2).describe() + ", cgroup v1"
    html = render_report(RunRecord("local", "quick", "", facts={"CPU budgets": stated}), {}, complete=True, grafana=None)
    assert f"<b>CPU budgets</b>: {stated}" in html and "0.15 CPU per shard" in stated
    assert "none enforced" in render_report(RunRecord("local", "quick", ""), {}, complete=True, grafana=None)


def test_a_first_pass_for_more_shards_starts_at_a_share_of_linear_from_the_one_shard_knee():
    from matchlab.experiment.runner import Route
    from matchlab.experiment.searches import SCALING_START_PER_SHARD, _first_rate

    per_shard = lambda route: SCALING_START_PER_SHARD * len(route.shards)
    three, one = Route(("a", "b", "c"), via_gateway=True), Route(("a",), via_gateway=True)
    found = {1: scaling.Capacity(1, []), 3: scaling.Capacity(3, [])}
    assert _first_rate(one, per_shard, found) == _first_rate(three, per_shard, found) / 3 == 100.0  # nothing known yet
    found[1].passes.append(scaling.Pass(480.0, 500.0, [], ""))
    assert _first_rate(three, per_shard, found) == pytest.approx(scaling.START_FRACTION_OF_LINEAR * 3 * 480.0)
    assert _first_rate(one, per_shard, found) == 100.0
    found[1].passes[0] = scaling.Pass(100.0, 110.0, [], "")  # below the floor: the usual start stands
    assert _first_rate(three, per_shard, found) == 300.0


def test_searches_start_from_the_shards_budget_and_still_find_a_knee_far_below_it():
    from matchlab.experiment.runner import Route
    from matchlab.experiment.searches import SCALING_START_PER_SHARD, START_PER_SHARD_CPU, budget_start, start_per_shard

    three, one = Route(("a", "b", "c"), via_gateway=True), Route(("a",), via_gateway=True)
    start = budget_start(scaling.Budgets(0.2, 0.5))
    assert start(one) == pytest.approx(0.2 * START_PER_SHARD_CPU) == pytest.approx(700.0)
    assert start(three) == pytest.approx(2100.0)
    assert start_per_shard(scaling.Budgets(0.2, 0.1).shard_cpu) == pytest.approx(700.0)  # C3, C4: one shard's worth
    assert budget_start(scaling.Budgets(0.01, 0.1))(one) == SCALING_START_PER_SHARD  # a tiny budget: the floor
    # The start is about two thirds of the knee here; a machine needing three times the CPU per order has its
    # knee at under half the start, and the search steps down to it.
    knee = 0.45 * start(one)
    found, steps, _ = scaling.knee_search(fake_system(knee), start(one))
    assert found <= knee < found * (1 + scaling.KNEE_PRECISION)
    assert not steps[0].passed


def test_a_failure_with_nothing_saturated_is_run_again_once_and_a_real_limit_still_counts():
    knee, stalled_at = 1000.0, 750.0
    system = fake_system(knee)
    stalls = []

    def stalled_once(rate: float) -> scaling.Step:
        step = system(rate)
        if rate == stalled_at and not stalls:  # a stall from outside: the shard barely busy, the step lost
            stalls.append(rate)
            return scaling.Step(rate, False, 0.9, 0.05, 400.0, 250.0, {"me-shard-a": 0.6, "edge-gateway": 0.3})
        return step

    found, steps, _ = scaling.knee_search(stalled_once, 500.0)
    assert knee * (1 - scaling.KNEE_PRECISION) <= found <= knee
    assert [(s.rate, s.passed, s.retried) for s in steps[:3]] == [(500, True, False), (750, False, True),
                                                                  (750, True, False)]
    first = scaling.Pass.from_steps(found, steps, BUDGETS)
    assert first.bottleneck.startswith("me-shard-a at")  # the saturated failure above the knee, not the stall

    # A limit outside the budgets (nothing saturated, every time): one retry per rate, and it still counts.
    def shared_stage(rate: float) -> scaling.Step:
        ok = rate <= knee
        return scaling.Step(rate, ok, 1.0 if ok else 0.9, 0.0 if ok else 0.05, 10.0, 5.0, {"me-shard-a": 0.5})

    found, steps, _ = scaling.knee_search(shared_stage, 500.0)
    assert found <= knee
    failing = [s.rate for s in steps if not s.passed]
    assert all(failing.count(r) == 2 for r in failing)
    assert sum(s.retried for s in steps) == len(failing) / 2
    # Where CPU was not measured, nothing is retried.
    assert scaling.Step(1.0, False, 0.5, 0.5, 1.0, 1.0).budgeted_saturated() is None
