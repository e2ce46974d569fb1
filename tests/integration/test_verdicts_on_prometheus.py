"""Every criterion shown able to fail: wrong systems modelled as series, judged by the real queries.

Each scenario models a system for one experiment (a coupled or stalled
matcher, a saturated shard, a draining book, evidence that does not hold
together), backfills it into a real Prometheus (``synthetic_prometheus``)
and runs the production criteria on it. Scenarios sit 20 minutes apart on
one time axis, so one Prometheus serves them all.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from matchlab.experiment import criteria
from matchlab.experiment.criteria import Context
from matchlab.experiment.cycle_design import ARM_MARGIN_S, GRID_OFFSET_S
from matchlab.experiment.cycles import ArmRecord, CycleLog
from matchlab.experiment.evidence import SCRAPE_S, journal_change, p99_shift
from matchlab.experiment.measures import Measurement, decide
from matchlab.experiment.profiles import QUICK
from matchlab.experiment.record import ExperimentRecord, PhaseRecord
from matchlab.loadgen.results import LoadResult, SecondStats
from matchlab.loadgen.run_label import run_label
from matchlab.observe.histograms import Buckets
from matchlab.observe.verdicts import Status, Verdict
from tests.synthetic_prometheus import SyntheticSeries, model_requests, model_shard, serve

pytestmark = pytest.mark.integration

RUN = "run-synthetic"
GAP_S = 1200.0
T0 = (time.time() // 3600 - 6) * 3600  # well in the past, hour-aligned: scenarios never touch "now"
P = QUICK
A4_RATE = 600.0  # orders/s on shard a: enough samples for a 10 % resolution over 30 s windows
B2_SHARD_ORDERS = 1680 / 60 / 0.6  # orders/s per shard that make 5,040 matches/min over three at 0.6 fills


def load(per_s: float, seconds: float, error_ratio: float = 0.0) -> LoadResult:
    timeline = []
    for sec in range(int(seconds)):
        n = round(per_s)
        bad = round(n * error_ratio)
        timeline.append(SecondStats(sec, scheduled=n, sent=n, ok=n - bad, errors={"503": bad} if bad else {}))
    scheduled = sum(s.scheduled for s in timeline)
    bad = sum(sum(s.errors.values()) for s in timeline)
    lat = {"p50": 2.0, "p99": 5.0, "count": scheduled - bad}
    return LoadResult(per_s, seconds, scheduled, scheduled, scheduled - bad, 0, {"503": bad} if bad else {},
                      per_s, lat, {}, {"p99": 0.1}, timeline)


def scenario_start(i: int) -> float:
    return T0 + i * GAP_S


# -- A4: broker outage, in cycles ------------------------------------------------------------

A4_SCENARIOS = {  # name: (orders/s, latency scale in the outage arms, fraction matched in them, episode spread,
    #                      drift of the whole run's latency from its start to its end)
    "healthy": (A4_RATE, 1.0, 1.0, 0.05, 0.0),
    "coupled": (A4_RATE, 2.0, 1.0, 0.05, 0.0),  # the matcher waits on the broker: its tail moves
    "stalled": (A4_RATE, 1.0, 0.2, 0.05, 0.0),  # the matcher stops: orders complete only after the outage
    "sparse": (4.0, 1.0, 1.0, 0.05, 0.0),  # a few orders a second, no probe traffic: too few samples per block
    # Latency grows 40 % over the run (a snapshot growing, a disk filling): one baseline window followed by one
    # outage window would read a third of that as the outage's; cycles cancel it.
    "drift": (A4_RATE, 1.0, 1.0, 0.05, 0.4),
    # Episodes: whole blocks slower or faster by half (a disk's bad seconds): too noisy to decide the bar.
    "episodes": (A4_RATE, 1.0, 1.0, 0.6, 0.0),
    # The outage relieves the matcher (a shard that publishes its own events does less with the broker out).
    "relieved": (A4_RATE, 0.6, 1.0, 0.05, 0.0),
}
CYCLES = 8
ARM_S = P.a4_cycles.arm_s(SCRAPE_S)
ARM_PERIOD_S = (P.a4_cycles.blocks_per_arm + 1) * SCRAPE_S


def arm_starts(start: float, cycles: int) -> list[tuple[bool, int, float]]:
    """(treated, cycle, arm start) for B0 T0 B1 T1 ... Bk, each arm a whole number of scrapes after the last."""
    return [(k % 2 == 1, k // 2, start + k * ARM_PERIOD_S + GRID_OFFSET_S) for k in range(2 * cycles + 1)]


def cycled(exp_id: str, start: float, rate: float, cycles: int, names=("base", "outage")) -> ExperimentRecord:
    exp = ExperimentRecord(exp_id, exp_id, "ASR", "shard a", "")
    log = CycleLog("broker outage", "synthetic", SCRAPE_S, "a")
    for treated, cycle, t in arm_starts(start, cycles):
        name = f"{names[1] if treated else names[0]}-{cycle}"
        marks = {"measured": t} | ({"outage": t, "resumed": t + ARM_S} if treated else {})
        exp.phases.append(PhaseRecord(name, t, t + ARM_S, None, rate, ["a"], load(rate, ARM_S), marks))
        log.arms.append(ArmRecord(name, treated, cycle))
    log.stopped = f"cap of {cycles} cycles reached"
    exp.cycles = log
    return exp


def in_treated(start: float, cycles: int) -> Callable[[float], bool]:
    spans = [(t, t + ARM_S) for treated, _, t in arm_starts(start, cycles) if treated]
    return lambda t: any(a < t <= b + ARM_MARGIN_S + 0.1 for a, b in spans)


def model_a4(s: SyntheticSeries, i: int, rate: float, scale: float, matched: float, episodes: float,
             drift: float) -> None:
    start = scenario_start(i)
    end = start + (2 * CYCLES + 1) * ARM_PERIOD_S
    treated = in_treated(start, CYCLES)
    model_shard(s, "a", start - 30, end + 30, orders_per_s=rate, seed=i, episode_sd=episodes,
                latency_scale=lambda t: (scale if treated(t) else 1.0) * (1 + drift * max(0.0, t - start) / (end - start)),
                matched_fraction=lambda t: matched if treated(t) else 1.0)
    model_requests(s, start - 30, end + 30, run=run_label(RUN), experiment=f"A4-{i}", per_s=rate)


# -- the fault suite's reading: one window before a fault, one during it ------------------------

FAULT_SCENARIO = 9  # the disk slows in the fault (sync p99 fifteenfold), the match p99 triples with it


def model_slow_disk_fault(s: SyntheticSeries) -> tuple[tuple[float, float], tuple[float, float]]:
    start = scenario_start(FAULT_SCENARIO)
    fault = (start + 40, start + 80)
    model_shard(s, "a", start - 30, start + 110, orders_per_s=A4_RATE, seed=FAULT_SCENARIO,
                latency_scale=lambda t: 3.0 if fault[0] < t <= fault[1] else 1.0,
                sync_scale=lambda t: 15.0 if fault[0] < t <= fault[1] else 1.0)
    return (start + 5, fault[0]), fault


# -- B2: peak sustained -----------------------------------------------------------------------

B2_SCENARIOS = ("healthy", "saturated", "draining", "events_lost", "errors_hidden", "fewer_fills")
FILLS = 0.6


def b2_phase(start: float, error_ratio: float = 0.0) -> PhaseRecord:
    rate = 3 * B2_SHARD_ORDERS
    phase = PhaseRecord("B2", start, start + P.b2_warmup_s + P.b2_s, 5040, rate, ["a", "b", "c"],
                        load(rate, P.b2_warmup_s + P.b2_s, error_ratio), {"measured": start + P.b2_warmup_s})
    phase.extra["fixed_order_rate"] = rate
    phase.extra["offered"] = {"mean": 5040.0, "sd": 90.0, "minimum": 4900.0, "sigmas": 3.0, "forecast": True}
    return phase


def model_b2(s: SyntheticSeries, i: int, name: str) -> None:
    start = scenario_start(i)
    measured = start + P.b2_warmup_s
    end = start + P.b2_warmup_s + P.b2_s
    for k, shard in enumerate("abc"):
        kw: dict = {}
        if name == "saturated" and shard == "c":  # shard c cannot keep up: its queue fills, half its orders wait
            kw = {"matched_fraction": lambda t: 0.5 if t > measured else 1.0,
                  "queue": lambda t: min(0.5, max(0.0, (t - measured) / 200))}
        if name == "draining" and shard == "a":  # the book thins: fills per order fall, depth goes to zero
            kw = {"fills_per_order": lambda t: max(0.1, 0.6 - 0.5 * max(0.0, t - measured) / 60),
                  "depth": lambda t: max(0.0, 2000 - 2000 * max(0.0, t - measured) / 70)}
        if name == "fewer_fills":  # every shard makes 8 % fewer fills than its orders should: still above the bar
            kw = {"fills_per_order": lambda t: FILLS * 0.92 * 1.2}
        model_shard(s, shard, start - 30, end + 30, orders_per_s=B2_SHARD_ORDERS, seed=100 * i + k, **kw)
    error = 0.05 if name == "errors_hidden" else 0.0
    model_requests(s, start - 30, end + 30, run=run_label(RUN), experiment=f"B2-{i}", per_s=3 * B2_SHARD_ORDERS,
                   error_ratio=error, shards=("a", "b", "c"), remote_errors=name != "errors_hidden", gateway=True)


def replica(name: str) -> Callable[[dict[str, tuple[float, float]]], dict[str, int]]:
    """What a replica of the seeded books makes with the orders sent in each shard's span."""
    fills = FILLS * 1.2 if name == "fewer_fills" else FILLS
    return lambda spans: {sh: round(B2_SHARD_ORDERS * fills * (t1 - t0)) for sh, (t0, t1) in spans.items()}


# -- B5: shard isolation, in cycles -----------------------------------------------------------

B5_SCENARIOS = {  # name: (shard a's latency scale with b loaded; shard b's orders/s when loaded)
    "isolated": (1.0, 100.0),
    "coupled": (1.3, 100.0),  # b's load slows a: +30 %
    "faster": (0.7, 100.0),  # a change either way is an effect: a gets faster by 30 % when b is loaded
    "b_never_rose": (1.0, 0.0),
}
B5_A_RATE = 1500.0


def model_b5(s: SyntheticSeries, i: int, loaded_scale: float, b_rate: float) -> None:
    start = scenario_start(i)
    end = start + (2 * CYCLES + 1) * ARM_PERIOD_S
    loaded = in_treated(start, CYCLES)
    model_shard(s, "a", start - 30, end + 30, orders_per_s=B5_A_RATE, seed=i, episode_sd=0.03,
                latency_scale=lambda t: loaded_scale if loaded(t) else 1.0)
    model_shard(s, "b", start - 30, end + 30, orders_per_s=lambda t: b_rate if loaded(t) else 0.0, seed=i + 1)
    total, gw = 0.0, []
    for t in [start - 25 + 5 * k for k in range(int((end - start + 50) / 5))]:
        total += b_rate * 5 if loaded(t) else 0.0
        gw.append((t, total))
    s.counter("gw_requests_total", {"shard": "b", "status": "2xx"}, gw)


def b5_exp(start: float) -> ExperimentRecord:
    exp = cycled("B5", start, B5_A_RATE, CYCLES, ("b-idle", "b-loaded"))
    for phase, arm in zip(exp.phases, exp.cycles.arms):
        if arm.treated:  # b's flow at 100/s beside a's
            phase.order_rate = B5_A_RATE + 100
            phase.load = load(B5_A_RATE + 100, ARM_S)
    return exp


# -- the served series --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prom(tmp_path_factory):
    s = SyntheticSeries()
    for i, params in enumerate(A4_SCENARIOS.values()):
        model_a4(s, i, *params)
    model_slow_disk_fault(s)
    for j, name in enumerate(B2_SCENARIOS):
        model_b2(s, 10 + j, name)
    for k, (loaded, b_rate) in enumerate(B5_SCENARIOS.values()):
        model_b5(s, 20 + k, loaded, b_rate)
    with serve(s, tmp_path_factory.mktemp("synthetic-prometheus")) as client:
        yield client


def by_id(verdicts: list[Verdict]) -> dict[str, Verdict]:
    return {v.criterion.id: v for v in verdicts}


def judged(prom, exp: ExperimentRecord, ids: dict[str, Measurement]) -> dict[str, Verdict]:
    ctx = Context(prom, RUN, P)
    return {cid: decide(ctx.criterion(cid), m) for cid, m in ids.items()}


def a4(prom, name: str) -> dict[str, Verdict]:
    i = list(A4_SCENARIOS).index(name)
    exp = cycled(f"A4-{i}", scenario_start(i), A4_SCENARIOS[name][0], CYCLES)
    ctx = Context(prom, RUN, P)
    return judged(prom, exp, {"A4.decoupling": criteria.rise(ctx, "A4.decoupling", exp, P.a4_cycles),
                              "A4.outage_orders": criteria.outage_orders(ctx, exp)})


def test_a4_healthy_matcher_passes_with_the_power_to_see_10_percent(prom):
    v = a4(prom, "healthy")
    assert v["A4.decoupling"].status is Status.PASS, v["A4.decoupling"].message()
    assert v["A4.decoupling"].resolving_power < 0.10
    assert "24 blocks of 8 cycles" in v["A4.decoupling"].detail and "Hodges-Lehmann" in v["A4.decoupling"].detail
    assert v["A4.outage_orders"].status is Status.PASS, v["A4.outage_orders"].message()


def test_a4_coupled_matcher_fails_decoupling(prom):
    v = a4(prom, "coupled")["A4.decoupling"]
    assert v.status is Status.FAIL, v.message()
    assert 0.7 < v.observed < 1.3  # the p99 doubled


def test_a4_a_p99_that_falls_beyond_the_bar_passes_and_says_so(prom):
    for name, said in (("relieved", True), ("healthy", False)):
        v = a4(prom, name)["A4.decoupling"]
        assert v.status is Status.PASS, v.message()
        assert ("the p99 fell by more than 10%" in v.detail) is said, v.message()


def test_a4_stalled_matcher_fails_on_the_orders_the_outage_should_hold(prom):
    v = a4(prom, "stalled")
    assert v["A4.outage_orders"].status is Status.FAIL, v["A4.outage_orders"].message()
    assert v["A4.outage_orders"].observed == pytest.approx(0.2, abs=0.05)


def test_a4_a_drift_over_the_run_cancels_in_the_cycles(prom):
    v = a4(prom, "drift")["A4.decoupling"]
    assert v.status is Status.PASS and abs(v.observed) < 0.05, v.message()


def test_a4_sparse_or_episodic_evidence_is_inconclusive_and_says_what_would_decide(prom):
    for name in ("sparse", "episodes"):
        v = a4(prom, name)["A4.decoupling"]
        assert v.status is Status.INCONCLUSIVE, v.message()
        assert "cycles at this noise would" in v.detail and v.resolving_power > 0.10, v.message()


def test_the_fault_suite_excuses_what_the_journals_slowdown_accounts_for(prom):
    """Its reading of a p99 held through a fault: a rise within twice the sync's own rise is not a failure."""
    base, fault = model_slow_disk_fault(SyntheticSeries())  # the windows only: the series are served already
    shift = p99_shift(prom, "a", base, fault, 0.10, journal_change(prom, "a", base, fault), excuse_slower=True)
    assert shift.status is Status.INCONCLUSIVE and shift.ok, shift.detail
    assert "accounts for" in shift.detail and "no more than the journal's own slowdown" in shift.detail


def b2(prom, name: str) -> dict[str, Verdict]:
    i = 10 + B2_SCENARIOS.index(name)
    start = scenario_start(i)
    exp = ExperimentRecord(f"B2-{i}", "B2", "ASR 2", "gateway", "",
                           [b2_phase(start, 0.05 if name == "errors_hidden" else 0.0)])
    ctx = Context(prom, RUN, P)
    factor = 0.9 if name == "events_lost" else 1.0
    window = criteria.measured_window(exp.phases[0], P)
    measured = {
        "B2.sustained": criteria.sustained_rate(ctx, exp),
        "B2.replica": criteria.replica_agreement(ctx, exp, replica(name)),
        "B2.events_agree": criteria.events_agree(ctx, exp, lambda windows, want: round(want * factor)),
        "B2.error_rate": criteria.error_rate(ctx, exp, ("a", "b", "c"), via_gateway=True),
        "B2.queue": criteria.queue(ctx, ("a", "b", "c"), *window),
        "B2.depth": criteria.depth(ctx, ("a", "b", "c"), window[0], exp.phases[0].end),
    }
    measured |= {f"B2.p99.{sh}": criteria.p99(ctx, sh, *window) for sh in "abc"}
    return judged(prom, exp, measured)


def test_b2_healthy_system_passes_every_criterion(prom):
    for verdict in b2(prom, "healthy").values():
        assert verdict.status is Status.PASS, verdict.message()


def test_b2_saturated_shard_fails_throughput_naming_the_queue(prom):
    v = b2(prom, "saturated")
    assert v["B2.sustained"].status is Status.FAIL, v["B2.sustained"].message()
    assert "fell behind" in v["B2.sustained"].detail and "queue" in v["B2.sustained"].detail
    assert v["B2.queue"].status is Status.FAIL


def test_b2_draining_book_fails_depth_and_leaves_throughput_undecided(prom):
    v = b2(prom, "draining")
    assert v["B2.depth"].status is Status.FAIL, v["B2.depth"].message()
    assert v["B2.sustained"].status is Status.INCONCLUSIVE, v["B2.sustained"].message()
    assert "offered less than the bar" in v["B2.sustained"].detail


def test_b2_a_matcher_making_fewer_fills_than_its_orders_should_fails_though_above_the_bar(prom):
    v = b2(prom, "fewer_fills")
    assert v["B2.sustained"].status is Status.PASS, v["B2.sustained"].message()
    assert v["B2.replica"].status is Status.FAIL and v["B2.replica"].observed == pytest.approx(0.08, abs=0.02), (
        v["B2.replica"].message())


def test_b2_events_missing_from_the_topic_fail_the_cross_check(prom):
    v = b2(prom, "events_lost")["B2.events_agree"]
    assert v.status is Status.FAIL and v.observed == pytest.approx(0.111, abs=0.01), v.message()


def test_b2_errors_missing_from_the_remote_written_counters_fail_the_error_rate(prom):
    v = b2(prom, "errors_hidden")["B2.error_rate"]
    assert v.status is Status.FAIL and "disagree" in v.detail, v.message()


def b5(prom, name: str) -> dict[str, Verdict]:
    i = 20 + list(B5_SCENARIOS).index(name)
    exp = b5_exp(scenario_start(i))
    ctx = Context(prom, RUN, P)
    return judged(prom, exp, {"B5.isolation": criteria.rise(ctx, "B5.isolation", exp, P.b5_cycles),
                              "B5.b_load": criteria.b_load(ctx, exp), "B5.b_errors": criteria.b_errors(ctx, exp)})


def test_b5_an_isolated_shard_passes_and_b_load_rose(prom):
    v = b5(prom, "isolated")
    assert v["B5.isolation"].status is Status.PASS, v["B5.isolation"].message()
    assert v["B5.b_load"].status is Status.PASS and v["B5.b_errors"].status is Status.PASS, v["B5.b_load"].message()


@pytest.mark.parametrize("name, change", [("coupled", 0.3), ("faster", -0.3)])
def test_b5_a_change_either_way_fails_isolation(prom, name, change):
    v = b5(prom, name)["B5.isolation"]
    assert v.status is Status.FAIL and v.observed == pytest.approx(change, abs=0.08), v.message()


def test_b5_when_b_load_never_rose_the_precondition_fails(prom):
    v = b5(prom, "b_never_rose")
    assert v["B5.b_load"].status is Status.FAIL or v["B5.b_load"].no_data, v["B5.b_load"].message()


def test_latency_verdicts_keep_the_bucket_vectors_they_judged(prom):
    """The evidence a later comparison reads reproduces each verdict's own figure."""
    rise = a4(prom, "coupled")["A4.decoupling"]
    base, other = (Buckets.from_dict(rise.evidence[k]) for k in ("base", "other"))
    assert other.quantile(0.99) / base.quantile(0.99) - 1 == pytest.approx(rise.evidence["pooled"]["estimate"],
                                                                        rel=1e-6)
    healthy = b2(prom, "healthy")
    for shard in "abc":
        v = healthy[f"B2.p99.{shard}"]
        buckets = Buckets.from_dict(v.evidence["buckets"])
        assert v.evidence["shard"] == shard and buckets.n > 0
        assert buckets.quantile(0.99) == pytest.approx(v.observed)
