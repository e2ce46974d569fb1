"""Capacity experiments: where latency breaks (C1, C2), how capacity scales with shards (S1), what a shard's CPU
buys (C3), a throttled gateway (C4), and the smallest budget that carries ASR 2's rate, checked (C5).

S1, C3 and C4 run the same measurement (``capacity_search``): each
configuration's knee bracketed with short steps, then rounds of fixed rates
across it, every step a trial, on a quiet system under test
(``budgeted_steps``). Capacities are the 50 % points of pass/fail against
log rate over every step (``capacity_fit``); the scaling verdict reads them
(``scaling_measure``); the cost model and the sizing answer come from C3's
and S1's steps (``cost_model``).
"""

from __future__ import annotations

import os
import time

from matchlab.experiment import scaling
from matchlab.experiment.budgeted_steps import BudgetedServices, step_runner
from matchlab.experiment.capacity_design import CapacityDesign
from matchlab.experiment.capacity_fit import estimate_capacities, fills_per_order, usl_from_steps
from matchlab.experiment.capacity_search import Configuration, Search
from matchlab.experiment.cost_model import cost_points, fit_cost_model, size_shards
from matchlab.experiment.measures import interval_side
from matchlab.experiment.record import ExperimentRecord
from matchlab.experiment.registry import ASR2_BAR, SCALING_FACTOR
from matchlab.experiment.runner import ExperimentRunner, Route
from matchlab.experiment.scaling_measure import at_the_capacity, bottleneck_text, key, scaling_measurement, steps_of
from matchlab.loadgen.profile import LoadProfile
from matchlab.observe.verdicts import Status
from matchlab.stack.spec import Topology

SEED = (500, 50)  # resting orders / levels per symbol
SHARD_A = Route(("a",), via_gateway=False)
GATEWAY_ABC = Route(("a", "b", "c"), via_gateway=True)


# -- headroom: capacity search (not part of the ASR verdicts) --------------------------------

CAPACITY_RATES = (100, 200, 400, 700, 1000, 1300, 1600, 2000, 2500, 3000, 4000, 5000)
KNEE_P99_MS = 200.0
GOOD_P99_MS = 50.0
KNEE_ERROR_RATIO = 0.01


def _capacity(s, exp_id: str, topology: Topology, route: Route) -> ExperimentRecord:
    """Step the arrival rate up until client p99 reaches 200 ms or errors reach 1 %."""
    r = s.runner(topology)
    exp = ExperimentRecord(exp_id, f"Capacity search, {route.label}", "headroom", route.label, "")
    exp.seed = r.reset_and_seed(list(route.shards), *SEED)
    steps = []
    for rate in CAPACITY_RATES:
        before = r.counters(route.shards)
        phase = r.drive(exp, f"{rate}/s", route, LoadProfile.constant(rate, s.profile.capacity_step_s),
                        r.source(route, f"{exp_id}-{rate}"), None)
        r.settle(route.shards, wait_for_scrape=False)
        after = r.counters(route.shards)
        matches, orders = after[0] - before[0], after[1] - before[1]
        fills = matches / orders if orders else 0.0
        load = phase.load
        step = {"order_rate": rate, "achieved": load.achieved_rate, "p99_ms": load.latency_ms["p99"],
                "error_ratio": load.error_ratio, "fills_per_order": fills,
                "matches_per_min": load.ok / load.duration_s * fills * 60}
        steps.append(step)
        if load.latency_ms["p99"] >= KNEE_P99_MS or load.error_ratio >= KNEE_ERROR_RATIO:
            break
    exp.extra["steps"] = steps
    ok = [st for st in steps if st["p99_ms"] < KNEE_P99_MS and st["error_ratio"] < KNEE_ERROR_RATIO]
    good = [st for st in steps if st["p99_ms"] < GOOD_P99_MS and st["error_ratio"] < KNEE_ERROR_RATIO]
    exp.extra["knee"] = ok[-1] if ok else None
    exp.extra["knee_p99_below_50ms"] = good[-1] if good else None
    exp.extra["stopped_by_bar"] = len(ok) < len(steps)
    return exp


def run_c1(s) -> ExperimentRecord:
    return _capacity(s, "C1", Topology.SINGLE, SHARD_A)


def run_c2(s) -> ExperimentRecord:
    return _capacity(s, "C2", Topology.MULTI, GATEWAY_ABC)


# -- scaling from capacity (ASR 2) ------------------------------------------------------------

SCALING_START_PER_SHARD = 100.0  # orders/s per shard at the first bracket step, at least
# ... or this many orders/s per CPU of a shard's budget: under the knee here (3,900-6,800 orders/s per CPU
# through the gateway at 0.1-0.2 CPU, depending on the tree and the day), so a bracket takes four to six steps. A
# machine that needs several times the CPU per order still gets a bracket: it halves the rate down to 1/16.
START_PER_SHARD_CPU = 3000.0
# A bracket for N > 1 starts at this share of N x the one-shard bracket's middle: under linear by a little less
# than one growth step, so a configuration that scales at 0.8-1.0 of linear is bracketed in two or three steps.
START_FRACTION_OF_LINEAR = 0.85


def scaling_budgets(max_shards: int, cores: int | None = None) -> scaling.Budgets:
    """matchlab.topology's budgets for a 2-core machine, scaled with the cores, the shards' share split over K."""
    return scaling.Budgets.for_machine(max_shards, cores or os.cpu_count() or 2)


def start_per_shard(shard_cpu: float) -> float:
    """Where a bracket starts, in orders/s per shard, from a shard's CPU budget."""
    return max(SCALING_START_PER_SHARD, START_PER_SHARD_CPU * shard_cpu)


def run_s1(s) -> ExperimentRecord:
    r = s.runner(Topology.SCALING)
    shards = list(r.stack.endpoints.shard_symbols)  # a, b, c; or a..K, the symbols re-spread (--max-shards K)
    budgets = scaling_budgets(len(shards))
    exp = ExperimentRecord("S1", f"Scaling from capacity: 1 to {len(shards)} shards behind the gateway", "ASR 2",
                           GATEWAY_ABC.label, r.reset_and_seed(shards, *SEED))
    routes = {n: Route(tuple(shards[:n]), via_gateway=True) for n in range(1, len(shards) + 1)}
    measure_scaling(s, r, exp, budgets, routes, s.profile.s1)
    s.record.facts["CPU budgets"] = f"S1: {exp.extra['budgets']}; CPUs: {exp.extra['cpus']}"
    return exp


def _cores() -> int:
    return os.cpu_count() or 2


def measure_scaling(s, r: ExperimentRunner, exp: ExperimentRecord, budgets: scaling.Budgets,
                    routes: dict[int, Route], design: CapacityDesign) -> None:
    """Bracket the configurations the ratio reads (N = 1 and 3), then rounds of them, A-B-B-A, until a look
    decides the ratio against its bar or the cap; any other N gets overload steps for the USL. The steps and
    what was decided go into ``exp.extra``."""
    bar, top = SCALING_FACTOR, scaling.RATIO_SHARDS[-1]
    exp.extra.update(bar=bar, cap_rounds=design.looks.cap, design=design.describe(),
                     budget_values={"shard_cpu": budgets.shard_cpu, "gateway_cpu": budgets.gateway_cpu})
    search = Search(design, lambda line: s.progress(f"[{exp.id}] {line}"))
    looks: list[dict] = []
    began = time.monotonic()

    def look(rounds: int, alpha: float) -> bool:
        exp.extra.update(steps=[st.to_dict() for st in search.steps], rounds=rounds)
        m = scaling_measurement(exp, 1 - alpha, top)
        status = (interval_side(">=", bar, *m.interval) if m.interval and not m.undecidable
                  else Status.INCONCLUSIVE)
        looks.append({"rounds": rounds, "level": 1 - alpha, "estimate": m.estimate, "interval": m.interval,
                      "status": status.value, "steps": len(search.steps)})
        s.progress(f"[{exp.id}] look after round {rounds}: {status.value}, ratio "
                   f"{m.estimate if m.estimate is None else round(m.estimate, 3)}, {1 - alpha:.1%} interval "
                   f"{m.interval and tuple(round(v, 3) for v in m.interval)}")
        return status is not Status.INCONCLUSIVE

    with BudgetedServices(s, r, budgets, _cores()) as services:
        _state(exp, services)
        configs = {n: Configuration(key(n), start_per_shard(budgets.shard_cpu) * n,
                                    step_runner(r, exp, route, services), n in scaling.RATIO_SHARDS)
                   for n, route in sorted(routes.items())}
        bracket_scaling(search, configs)
        exp.extra["brackets"] = [c.describe_bracket() for c in configs.values() if c.interleaved]
        stopped = search.run_rounds(list(configs.values()), look)
    exp.extra.update(steps=[st.to_dict() for st in search.steps], rounds=search.rounds, looks=looks,
                     stopped=stopped, level=looks[-1]["level"] if looks else None,
                     elapsed_s=time.monotonic() - began)
    _summarise(exp, top)


def bracket_scaling(search: Search, configs: dict[int, Configuration]) -> None:
    """Bracket N = 1, then each larger N the ratio reads from a little under linear scaling; the others are only
    placed where linear scaling would put them (their overload steps go above that)."""
    for n, config in sorted(configs.items()):
        if n > 1 and configs[1].centre:
            config.start = max(config.start, START_FRACTION_OF_LINEAR * n * configs[1].centre)
            config.centre = n * configs[1].centre
        if config.interleaved:
            search.bracket(config)


def _state(exp: ExperimentRecord, services: BudgetedServices) -> None:
    exp.extra.update(budgets=services.budgets.describe(), enforced=services.enforced,
                     not_enforced=services.why_not, cgroup=services.cgroups.version, cpus=services.cpus)
    exp.notes.append(f"CPU budgets and placement: {services.describe()}")


def _summarise(exp: ExperimentRecord, top: int) -> None:
    """The capacities at the final level and the USL, as plain data for the chart and the report."""
    steps = steps_of(exp)
    level = exp.extra.get("level") or 0.95
    gateway_cpu = exp.extra["budget_values"]["gateway_cpu"]
    caps = estimate_capacities(steps, level)
    exp.extra["capacities"] = [
        {"config": k, "shards": next((st.shards for st in steps if st.config == k), 0),
         "shard_cpu": next((st.shard_cpu for st in steps if st.config == k), 0.0),
         "estimate": c.estimate, "interval": c.interval, "level": level, "steps": c.steps, "passes": c.passes,
         "bottleneck": bottleneck_text(at_the_capacity(c, [st for st in steps if st.config == k], gateway_cpu),
                                       gateway_cpu)}
        for k, c in caps.items()]
    usl = usl_from_steps(steps, top)
    exp.extra["usl"] = {"throughputs": {str(n): xs for n, xs in usl.throughputs.items()}, "why_not": usl.why_not,
                        **({} if usl.fit is None else {"lambda": usl.fit.lam, "sigma": usl.fit.sigma,
                                                       "kappa": usl.fit.kappa, "implied_ratio": usl.fit.implied_ratio(top),
                                                       "sigma_interval": usl.intervals.sigma,
                                                       "kappa_interval": usl.intervals.kappa,
                                                       "ratio_interval": usl.intervals.ratio})}
    exp.notes.append(f"{exp.extra['design']}; {exp.extra.get('stopped', '')}")
    exp.notes.append("brackets: " + "; ".join(exp.extra.get("brackets", [])))
    exp.notes.append(usl.describe(top))


# -- the budget machinery tested on the real stack (marker capacity) ---------------------------

# Shard a direct, the only budgeted process: nothing else can be its bottleneck. Three budgets: a cost model
# fitted to the two ends predicts the middle, and each knee.
COST_MODEL_SHARD_CPU = (0.1, 0.2, 0.4)
THROTTLED_GATEWAY = scaling.Budgets(0.2, 0.1)  # a gateway budget under one 0.2-CPU shard's needs


def cpu_key(cpu: float) -> str:
    return f"{cpu:g} CPU"


def run_c3(s) -> ExperimentRecord:
    """Shard a's capacity (direct) at three CPU budgets, interleaved; the cost model from its overloaded steps."""
    r = s.runner(Topology.SINGLE)
    exp = ExperimentRecord("C3", "What a shard's CPU buys: shard a at three CPU budgets", "headroom", SHARD_A.label,
                           r.reset_and_seed(["a"], *SEED))
    design = s.profile.budget_tests
    low = scaling.Budgets(min(COST_MODEL_SHARD_CPU), THROTTLED_GATEWAY.gateway_cpu)
    exp.extra.update(design=design.describe(), budget_values={"shard_cpu": low.shard_cpu, "gateway_cpu": 0.0})
    search = Search(design, lambda line: s.progress(f"[{exp.id}] {line}"))
    with BudgetedServices(s, r, low, _cores(), widest_shard_cpu=max(COST_MODEL_SHARD_CPU)) as services:
        _state(exp, services)
        run = step_runner(r, exp, SHARD_A, services)

        def at(cpu: float):
            def step(rate: float, stage: str, step_s: float, excluded_s: float) -> scaling.Step:
                services.set_shard_budget(cpu)
                return run(rate, stage, step_s, excluded_s)
            return step

        configs = [Configuration(cpu_key(cpu), start_per_shard(cpu), at(cpu)) for cpu in COST_MODEL_SHARD_CPU]
        for config in configs:
            search.bracket(config)
        exp.extra["brackets"] = [c.describe_bracket() for c in configs]
        exp.extra["stopped"] = search.run_rounds(configs, lambda rounds, alpha: False)  # estimates, not a decision
    exp.extra.update(budgets=" vs ".join(f"shard a at {cpu:g} CPU" for cpu in COST_MODEL_SHARD_CPU),
                     steps=[st.to_dict() for st in search.steps], rounds=search.rounds)
    _summarise_cost(exp)
    return exp


def _summarise_cost(exp: ExperimentRecord) -> None:
    steps = steps_of(exp)
    caps = estimate_capacities(steps, 0.95)
    exp.extra["capacities"] = [{"config": k, "shard_cpu": float(k.split()[0]), "shards": 1, "estimate": c.estimate,
                                "interval": c.interval, "level": c.level, "steps": c.steps, "passes": c.passes}
                               for k, c in caps.items()]
    exp.notes.append(f"{exp.extra['design']}; " + "; ".join(exp.extra.get("brackets", [])))
    try:
        model = fit_cost_model(cost_points(steps))
    except ValueError as exc:
        exp.extra["cost_model"] = {"why_not": str(exc)}
        exp.notes.append(f"no cost model: {exc}")
        return
    exp.extra["cost_model"] = {
        "fixed": model.fixed, "per_order": model.per_order, "fixed_interval": model.fixed_interval,
        "per_order_interval": model.per_order_interval, "points": model.points, "describe": model.describe(),
        "predicted": {cpu_key(b): [model.capacity(b), *model.capacity_interval(b)] for b in model.budgets}}
    exp.notes.append(model.describe())
    exp.notes.append("capacity predicted by it vs measured (50 % points): " + "; ".join(
        f"{k}: {model.capacity(c['shard_cpu']):,.0f} vs {c['estimate'] or 0:,.0f} orders/s"
        for k, c in ((c["config"], c) for c in exp.extra["capacities"])))


def run_c4(s) -> ExperimentRecord:
    """S1's measurement for N = 1 and 3 with the gateway's budget under what one shard needs: scaling must FAIL."""
    r = s.runner(Topology.MULTI)
    exp = ExperimentRecord("C4", "Scaling from capacity with a throttled gateway", "headroom", GATEWAY_ABC.label,
                           r.reset_and_seed(list(GATEWAY_ABC.shards), *SEED))
    routes = {1: Route(("a",), via_gateway=True), 3: GATEWAY_ABC}
    measure_scaling(s, r, exp, THROTTLED_GATEWAY, routes, s.profile.budget_tests)
    return exp


# -- the sizing answer, checked --------------------------------------------------------------------------------


def sizing_answer(c3: ExperimentRecord, s1: ExperimentRecord):
    """The smallest CPU per shard that carries ASR 2's rate, from C3's cost model and S1's capacity and USL."""
    c3_steps, s1_steps = steps_of(c3), steps_of(s1)
    model = fit_cost_model(cost_points(c3_steps))
    fills = fills_per_order(s1_steps)
    if not fills:
        raise ValueError("S1's steps counted no orders: no fills per order to turn ASR 2's rate into orders/s")
    one = estimate_capacities([st for st in s1_steps if st.config == key(1)], 0.95)[key(1)]
    if one.estimate is None:
        raise ValueError(f"S1 has no one-shard capacity: {one.describe()}")
    top = max(st.shards for st in s1_steps)
    usl = usl_from_steps(s1_steps, top)
    if usl.fit is None:
        raise ValueError(f"S1 has no USL fit: {usl.why_not}")
    rate = ASR2_BAR / 60 / fills
    shard_cpu = s1.extra["budget_values"]["shard_cpu"]
    return size_shards(rate, range(1, top + 1), model, one.estimate, one.draws, shard_cpu, usl.fit.sigma,
                       usl.fit.kappa, usl.intervals.draws), fills


def run_c5(s) -> ExperimentRecord:
    """ASR 2's rate on N shards at the budget the sizing answer gives (its interval's top): it must pass."""
    c3, s1 = s.experiment("C3"), s.experiment("S1")
    r = s.runner(Topology.SCALING)
    shards = list(r.stack.endpoints.shard_symbols)
    n = len(shards)
    exp = ExperimentRecord("C5", "Sizing check: ASR 2's rate at the smallest CPU per shard the models give",
                           "headroom", GATEWAY_ABC.label, r.reset_and_seed(shards, *SEED))
    sizing, fills = sizing_answer(c3, s1)
    budget = sizing.check_budget(n)
    exp.extra.update(sizing=sizing.describe(n), check_budget=budget, rate=sizing.rate, fills_per_order=fills)
    exp.notes.append(sizing.describe(n))
    budgets = scaling.Budgets(budget, s1.extra["budget_values"]["gateway_cpu"])
    excluded = s.profile.warmup_exclusion_s
    with BudgetedServices(s, r, budgets, _cores()) as services:
        _state(exp, services)
        run = step_runner(r, exp, Route(tuple(shards), via_gateway=True), services)
        step = run(sizing.rate, "check", s.profile.sizing_check_s, excluded)
    step.config, step.stage = key(n), "check"
    exp.extra["check"] = step.to_dict()
    exp.notes.append(f"check: {sizing.rate:,.1f} orders/s ({ASR2_BAR:,.0f} matches/min at {fills:.3f} fills per "
                     f"order) on {n} shards at {budget:.3f} CPU each for {s.profile.sizing_check_s:g} s (first "
                     f"{excluded:g} s left out): {'passed' if step.passed else 'FAILED: ' + step.why_not()}; "
                     f"client p99 {step.client_p99_ms:.1f} ms, server p99 {step.server_p99_ms or 0:.1f} ms")
    return exp
