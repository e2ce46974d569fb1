"""The capacity measurement and the scaling verdict on simulated systems: bracket, rounds, looks, bottlenecks, budgets."""

from __future__ import annotations

import math
import random

import pytest

from matchlab.compare.sequential import LookSchedule
from matchlab.experiment import scaling
from matchlab.experiment.budgeted_steps import Placement, client_evidence, placement
from matchlab.experiment.capacity_design import SPREAD, CapacityDesign, halves, interleave, van_der_corput
from matchlab.experiment.capacity_search import Configuration, Search
from matchlab.experiment.criteria import Context
from matchlab.experiment.profiles import FULL, QUICK
from matchlab.experiment.record import ExperimentRecord
from matchlab.experiment.scaling_measure import scaling_measurement, scaling_verdict
from matchlab.experiment.searches import bracket_scaling
from matchlab.loadgen.results import LoadResult, Recorder
from matchlab.observe.verdicts import Status
from matchlab.topology import SCALING_CPU_PER_2_CORES

BUDGETS = scaling.Budgets(0.2, 0.5)
DESIGN = CapacityDesign(4, 6, 1, 4, LookSchedule((2, 3)))


def fake_step(capacity: float, n: int = 1, saturating: str = "me-shard-a", width: float = 0.0,
              rng: random.Random | None = None, lag_ms: float = 0.0, machine_busy: float = 0.5):
    """A configuration that answers everything below ``capacity`` orders/s and falls behind above it; with
    ``width`` the knee moves from step to step (a logistic of that scale in log rate)."""
    rng = rng or random.Random(1)

    def run(rate: float, stage: str = "", step_s: float = 8.0, excluded_s: float = 2.0) -> scaling.Step:
        knee = capacity * math.exp(width * math.log(1 / rng.random() - 1)) if width else capacity
        ok = rate <= knee
        load = min(rate, knee)
        share = {"me-shard-a": 0.5 * rate / knee, "edge-gateway": 0.4 * rate / knee}
        share[saturating] = min(1.0, rate / knee)
        orders = {chr(ord("a") + i): rate * step_s / n for i in range(n)}  # all taken in, at ``load`` per second
        return scaling.Step(rate, ok, 1.0 if ok else 0.8, 0.0, 10.0 if ok else 900.0, 5.0, share,
                            {} if ok else {saturating: 0.7}, 0.0, 0.2, lag_ms, machine_busy, shards=n,
                            shard_cpu=BUDGETS.shard_cpu, seconds=rate * step_s / load, orders=orders,
                            matches=load * step_s, cpu_used={k: v * 0.2 for k, v in share.items()})
    return run


def measured(capacities: dict[int, float], saturating: dict[int, str] | None = None, width: float = 0.0,
             enforced: bool = True, rounds: int = 3, seed: int = 1, **kw) -> ExperimentRecord:
    """An S1 record of a bracket and ``rounds`` rounds on simulated configurations."""
    rng = random.Random(seed)
    search = Search(DESIGN, lambda line: None)
    configs = {n: Configuration(f"N={n}", 700.0 * n, fake_step(c, n, (saturating or {}).get(n, "me-shard-a"), width,
                                                               rng, **kw), n in (1, 3))
               for n, c in sorted(capacities.items())}
    bracket_scaling(search, configs)
    search.design = CapacityDesign(4, 6, 1, 4, LookSchedule(tuple(range(1, rounds + 1))))
    search.run_rounds(list(configs.values()), lambda k, alpha: False)
    exp = ExperimentRecord("S1", "scaling", "ASR 2", "gateway", "")
    exp.extra.update(budgets=BUDGETS.describe(), enforced=enforced, not_enforced="" if enforced else "no cgroups",
                     budget_values={"shard_cpu": 0.2, "gateway_cpu": 0.5}, steps=[s.to_dict() for s in search.steps],
                     rounds=search.rounds, cpus="shards on CPU 1", level=0.95, bar=0.9, cap_rounds=rounds)
    return exp


def verdict(exp: ExperimentRecord):
    v = scaling_verdict(Context(None, "run", QUICK), exp)
    return v


def test_the_bracket_straddles_the_knee_within_its_precision():
    for knee in (137.0, 440.0, 1234.0, 2500.0):
        search = Search(DESIGN, lambda line: None)
        config = Configuration("N=1", 700.0, fake_step(knee))
        search.bracket(config)
        assert config.low <= knee < config.high <= config.low * 1.1 + 1e-9, (knee, config)
        assert config.low * (1 - SPREAD) < knee < config.high * (1 + SPREAD)
        assert all(s.stage == "bracket" for s in search.steps) and len(search.steps) <= 10


def test_a_bracket_that_fails_far_below_its_start_stops():
    search = Search(DESIGN, lambda line: None)
    config = Configuration("N=1", 700.0, fake_step(10.0))
    search.bracket(config)
    assert config.low is None and not any(s.passed for s in search.steps) and len(search.steps) == 5


def test_rounds_spread_fixed_rates_across_the_bracket_and_interleave_a_b_b_a():
    rates = DESIGN.round_rates(1000.0, 0)
    assert len(rates) == 4 and rates == sorted(rates)
    assert 850 < rates[0] and rates[-1] < 1150
    second = DESIGN.round_rates(1000.0, 1)
    assert not set(map(round, rates)) & set(map(round, second))  # later rounds fill in between
    assert [van_der_corput(k) for k in range(1, 5)] == [0.5, 0.25, 0.75, 0.125]
    plan = interleave({"N=1": halves([1, 2, 3, 4]), "N=3": halves([10, 20, 30, 40])}, ["N=1", "N=3"])
    assert [k for k, _ in plan] == ["N=1", "N=1", "N=3", "N=3", "N=3", "N=3", "N=1", "N=1"]
    assert [r for k, r in plan if k == "N=1"] == [1, 3, 4, 2]  # each half spans the range


def test_every_step_counts_once_and_n2_gets_only_overload_steps():
    exp = measured({1: 1000, 2: 1900, 3: 2800}, rounds=3)
    steps = exp.extra["steps"]
    rounds = [s for s in steps if s["stage"].startswith("round")]
    assert {s["config"] for s in rounds} == {"N=1", "N=2", "N=3"}
    two = [s for s in steps if s["config"] == "N=2"]
    assert len(two) == 2 and all(s["overloaded"] for s in two)  # no bracket: only what it tops out at, for the USL
    assert sum(s["config"] == "N=1" for s in rounds) == sum(s["config"] == "N=3" for s in rounds) == 13  # 1 overload


def test_a_round_whose_steps_all_passed_moves_up():
    search = Search(DESIGN, lambda line: None)
    config = Configuration("N=1", 700.0, fake_step(1000.0))
    config.centre = 600.0  # bracketed far too low (a stall failed a step)
    search.run_rounds([config], lambda k, alpha: False)
    last = [s.rate for s in search.steps if s.stage == "round 3"]
    assert max(last) > 600.0 * (1 + SPREAD) and any(not s.passed for s in search.steps)


def test_the_rounds_stop_at_the_first_look_that_decides():
    looks = []
    search = Search(DESIGN, lambda line: None)
    config = Configuration("N=1", 700.0, fake_step(1000.0))
    search.bracket(config)
    stopped = search.run_rounds([config], lambda k, alpha: looks.append((k, alpha)) or True)
    assert looks == [(2, pytest.approx(DESIGN.looks.levels()[0]))] and search.rounds == 2
    assert "decided at the look after round 2 of at most 3" == stopped


def test_linear_capacities_pass_with_a_tight_interval_and_the_usl_explains():
    v = verdict(measured({1: 1000, 2: 2000, 3: 3000}))
    assert v.status is Status.PASS and v.observed == pytest.approx(1.0, abs=0.03), v.detail
    assert v.resolving_power < 0.07 and "USL: lambda" in v.detail and "explains; the capacities decide" in v.detail
    assert "sigma" in v.detail and "5 s scrapes" in v.detail


def test_a_throttled_gateway_fails_scaling_and_is_named():
    v = verdict(measured({1: 1000, 2: 1100, 3: 1150}, {1: "me-shard-a", 2: "edge-gateway", 3: "edge-gateway"}))
    assert v.status is Status.FAIL and v.observed == pytest.approx(1150 / 3000, abs=0.03)
    assert "N=3: 1,1" in v.detail and "at the capacity: edge-gateway at" in v.detail.split("N=3: ")[1]


def test_noisy_knees_near_the_bar_are_inconclusive_and_say_what_would_decide():
    v = verdict(measured({1: 1000, 3: 2850}, width=0.06, rounds=1))
    assert v.status is Status.INCONCLUSIVE and "straddles" in v.detail and "rounds at this noise" in v.detail


def test_without_enforced_budgets_scaling_is_inconclusive():
    v = verdict(measured({1: 1000, 2: 2000, 3: 3000}, enforced=False))
    assert v.status is Status.INCONCLUSIVE and "not enforced" in v.detail


def test_a_capacity_set_by_the_load_generator_makes_scaling_inconclusive():
    v = verdict(measured({1: 1000, 2: 2000, 3: 3000}, lag_ms=120.0))
    assert v.status is Status.INCONCLUSIVE and "the load generator itself ran out" in v.detail


def test_a_configuration_that_never_failed_has_no_capacity():
    exp = measured({1: 1000, 3: 3000})
    exp.extra["steps"] = [s for s in exp.extra["steps"] if s["config"] != "N=3" or s["passed"]]
    v = verdict(exp)
    assert v.status is Status.INCONCLUSIVE and "N=3 has no capacity" in v.detail and "every step passed" in v.detail
    assert v.observed > 0.9  # at least: N=3's capacity lies above every rate it passed


def test_the_measurement_is_the_ratio_of_the_50_percent_points():
    exp = measured({1: 1000, 2: 2000, 3: 2400})
    m = scaling_measurement(exp, 0.9)
    assert m.estimate == pytest.approx(0.8, abs=0.03) and m.level == 0.9 and m.interval[0] <= m.estimate
    assert m.interval[1] < 0.9 and m.evidence["usl"]["sigma"] >= 0 and m.evidence["usl"]["kappa"] >= 0


def test_the_bottleneck_names_the_saturated_process_and_its_budget():
    failing = fake_step(100.0, saturating="edge-gateway")(150.0)
    text = scaling.bottleneck(failing, BUDGETS)
    assert text.startswith("edge-gateway at 100% of its 0.5-CPU budget") and "throttled in 70% of periods" in text
    lagging = scaling.Step(150, False, 0.7, 0.0, 900, None, {}, {}, 0.0, 1.0, 250.0)
    assert scaling.bottleneck(lagging, BUDGETS).startswith("the load generator itself")


def busy_machine_step(rate: float, machine_busy: float) -> scaling.Step:
    """A failing step where no budgeted service is saturated (shards at 70 %, the gateway at 50 %)."""
    return scaling.Step(rate, False, 0.9, 0.0, 400.0, 20.0, {"me-shard-a": 0.7, "edge-gateway": 0.5}, {}, 0.0, 0.2,
                        5.0, machine_busy, {"broker": 0.31})


def test_a_knee_set_by_the_busy_machine_is_named():
    step = busy_machine_step(1500, 0.97)
    assert scaling.foreign_limit(step) == scaling.LIMITED_BY_MACHINE
    text = scaling.bottleneck(step, BUDGETS)
    assert text.startswith("no process saturated (busiest me-shard-a at 70%") and "cores 97% busy" in text
    assert "broker 0.31 CPU" in text and text.endswith("shared with processes outside the budgets")
    quiet = busy_machine_step(1500, 0.6)
    assert scaling.foreign_limit(quiet) == "" and scaling.bottleneck(quiet, BUDGETS).endswith("the network path")


def test_a_step_is_overloaded_only_when_it_fell_behind():
    step = fake_step(1000.0)
    assert step(1200.0).overloaded and not step(900.0).overloaded
    stall = scaling.Step(900.0, False, 0.9, 0.0, 400.0, 20.0, seconds=8.0, orders={"a": 900 * 8})
    assert not stall.overloaded and stall.throughput == pytest.approx(900.0)
    doc = step(1200.0).to_dict()
    assert scaling.Step.from_dict(doc) == step(1200.0) and doc["overloaded"] and doc["throughput"] == pytest.approx(1000)


def test_the_client_evidence_leaves_out_the_first_seconds():
    rec = Recorder()
    for second in range(8):
        for _ in range(100):
            rec.on_scheduled(second)
            rec.on_sent(second, 10)
            rec.on_done(second, "t", "200" if second else "503", 900_000 if second < 2 else 5_000)
    load: LoadResult = rec.result(100.0, 8.0)
    whole = client_evidence(load, 0.0)
    later = client_evidence(load, 2.0)
    assert whole.error_ratio == pytest.approx(1 / 8) and whole.p99_ms > 800
    assert later.error_ratio == 0 and later.achieved == 1.0 and later.p99_ms == pytest.approx(5.0, rel=0.02)


@pytest.mark.parametrize("cores, shards_cpu, gateway_cpu, want", [
    (2, 0.6, 0.5, Placement("1", "0-1", "0", "overlap")),
    (4, 1.2, 1.0, Placement("1-3", "1-3", "0")),
    (8, 2.4, 2.0, Placement("3-7", "3-7", "0-2")),
    (2, 0.4, 0.0, Placement("1", "1", "0")),  # C3: shard a alone, no gateway
])
def test_the_budgeted_services_get_cpus_of_their_own_where_the_machine_has_them(cores, shards_cpu, gateway_cpu, want):
    got = placement(cores, shards_cpu, gateway_cpu)
    assert (got.shards, got.gateway, got.rest) == (want.shards, want.gateway, want.rest)
    assert bool(got.overlap) == bool(want.overlap)
    if got.overlap:
        assert "1.1 CPU together and this machine has 2" in got.overlap
        assert "the gateway shares CPU 1 with the shards and CPU 0 with the load generator" in got.describe()
    assert isinstance(placement(1, 0.6, 0.5), str)


def test_designs_are_even_and_leave_evidence():
    with pytest.raises(ValueError, match="even number"):
        CapacityDesign(4, 6, 1, 3, LookSchedule((2,)))
    with pytest.raises(ValueError, match="shorter than a step"):
        CapacityDesign(4, 6, 6, 4, LookSchedule((2,)))
    with pytest.raises(ValueError, match="whole number of 5 s scrape intervals"):
        CapacityDesign(4, 8, 2, 4, LookSchedule((2,)))
    for p in (QUICK, FULL):
        assert "A-B-B-A" in p.s1.describe() and "rounds" in p.s1.describe() and "cycles" not in p.s1.describe()


def test_the_scaling_chart_draws_every_step_the_curves_and_the_usl():
    from matchlab.experiment.searches import _summarise
    from matchlab.reporting.charts import scaling_chart

    exp = measured({1: 1000, 2: 1900, 3: 2800})
    exp.extra.update(design="d", brackets=[])
    _summarise(exp, 3)
    svg, drawn = scaling_chart(exp)
    assert drawn == 3 and 'id="series-1"' in svg and 'id="series-3-failed"' in svg and 'id="curve-3"' in svg
    assert 'id="usl"' in svg and "0.9 x linear" in svg and 'id="capacity-interval-1"' in svg


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
    assert scaling.Budgets.for_machine(3, 2) == scaling.Budgets(0.1, 0.5, 3, 2)  # the standard three
    six = scaling.Budgets.for_machine(6, 2)
    assert (six.shard_cpu, six.gateway_cpu) == (0.05, 0.5) and six.total(6) == pytest.approx(0.8)
    assert "0.05 CPU per shard" in six.describe() and "N = 1..6" in six.describe() and "0.8 of 2 cores" in six.describe()
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
    assert f"<b>CPU budgets</b>: {stated}" in html and "0.075 CPU per shard" in stated
    assert "none enforced" in render_report(RunRecord("local", "quick", ""), {}, complete=True, grafana=None)


def test_brackets_start_from_the_shards_budget():
    from matchlab.experiment.searches import SCALING_START_PER_SHARD, START_PER_SHARD_CPU, start_per_shard

    assert start_per_shard(0.2) == pytest.approx(0.2 * START_PER_SHARD_CPU) == pytest.approx(600.0)
    assert start_per_shard(0.01) == SCALING_START_PER_SHARD  # a tiny budget: the floor
    # A machine needing twice the CPU per order has its knee at about half the start: the bracket steps down to it.
    search = Search(DESIGN, lambda line: None)
    config = Configuration("N=1", start_per_shard(0.2), fake_step(0.55 * start_per_shard(0.2)))
    search.bracket(config)
    assert config.low <= 0.55 * start_per_shard(0.2) < config.high and not search.steps[0].passed
