"""The experiments of DESIGN.md §5 (A1-A4, B1-B5), their dependencies and their verdicts.

``Suite`` runs each experiment at most once per session, on demand and in
dependency order (A2 needs A1's warm-up and calibration; the ASR 2
criteria need B1's baseline), caches its record and its verdicts, and
re-raises a failed dependency's error for everything that needs it. The
pytest modules are thin wrappers over ``experiment()`` and ``verdict()``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from matchlab.experiment import criteria
from matchlab.experiment.profiles import ProfileSettings
from matchlab.experiment.record import ExperimentRecord, RunRecord
from matchlab.experiment.runner import ExperimentRunner, Route
from matchlab.loadgen.flow import hot_symbol_mix
from matchlab.loadgen.profile import LoadProfile
from matchlab.observe.events import read_ids
from matchlab.observe.verdicts import Verdict
from matchlab.stack.spec import Topology
from matchlab.stack.stack import Stack

SEED = (500, 50)  # resting orders / levels per symbol (DESIGN.md §5)
A3_DEPTHS = ((100, 10), (1000, 100), (10_000, 500))
B2_MATCHES_PER_MIN = 5040.0  # 84/s as the anchor offered, a little above 5,000
EVENT_RECONCILE_TIMEOUT_S = 120.0

SHARD_A = Route(("a",), via_gateway=False)
GATEWAY_A = Route(("a",), via_gateway=True)
GATEWAY_ABC = Route(("a", "b", "c"), via_gateway=True)


@dataclass
class _Entry:
    topology: Topology
    run: Callable[[Suite], ExperimentRecord]
    judge: Callable[[Suite, ExperimentRecord], list[Verdict]]
    needs: tuple[str, ...] = ()


class Suite:
    def __init__(
        self,
        stack_for: Callable[[Topology], Stack],
        record: RunRecord,
        profile: ProfileSettings,
        run_id: str,
        progress: Callable[[str], None],
        on_experiment: Callable[[ExperimentRecord, Stack], None] = lambda e, s: None,
    ) -> None:
        self.stack_for = stack_for
        self.record = record
        self.profile = profile
        self.run_id = run_id
        self.progress = progress
        self.on_experiment = on_experiment
        self._runners: dict[Topology, ExperimentRunner] = {}
        self._verdicts: dict[str, list[Verdict]] = {}
        self._errors: dict[str, BaseException] = {}

    # -- plumbing ---------------------------------------------------------------

    def runner(self, topology: Topology) -> ExperimentRunner:
        stack = self.stack_for(topology)
        runner = self._runners.get(topology)
        if runner is None or runner.stack is not stack:
            previous = runner
            runner = self._runners[topology] = ExperimentRunner(stack, self.profile, self.run_id, self.progress)
            if previous is not None:  # a restarted stack keeps the flow's measured calibration
                runner.calibration = previous.calibration
        return runner

    def experiment(self, exp_id: str) -> ExperimentRecord:
        if exp_id in self.record.experiments:
            return self.record.experiments[exp_id]
        if exp_id in self._errors:
            raise RuntimeError(f"experiment {exp_id} failed earlier: {self._errors[exp_id]}") from self._errors[exp_id]
        entry = EXPERIMENTS[exp_id]
        for dep in entry.needs:
            self.experiment(dep)
        self.progress(f"--- experiment {exp_id} ({self.profile.name} profile) ---")
        try:
            exp = entry.run(self)
        except BaseException as exc:
            self._errors[exp_id] = exc
            raise
        self.record.experiments[exp_id] = exp
        self.on_experiment(exp, self.runner(entry.topology).stack)
        return exp

    def verdicts(self, exp_id: str) -> list[Verdict]:
        if exp_id not in self._verdicts:
            exp = self.experiment(exp_id)
            verdicts = EXPERIMENTS[exp_id].judge(self, exp)
            self._verdicts[exp_id] = verdicts
            self.record.add_verdicts(verdicts)
            for v in verdicts:
                self.progress(v.message())
        return self._verdicts[exp_id]

    def verdict(self, exp_id: str, name: str) -> Verdict:
        for v in self.verdicts(exp_id):
            if v.criterion.name == name:
                return v
        raise KeyError(f"{exp_id} has no criterion {name!r}: {[v.criterion.name for v in self.verdicts(exp_id)]}")

    def prom(self, topology: Topology):
        return self.runner(topology).stack.prometheus()


# -- ASR 1: one shard, direct --------------------------------------------------------


def run_a1(s: Suite) -> ExperimentRecord:
    r = s.runner(Topology.SINGLE)
    exp = ExperimentRecord("A1", "Warm-up, 500 matches/min", "ASR 1", SHARD_A.label, r.reset_and_seed(["a"], *SEED))
    exp.calibration = r.calibrate(SHARD_A).to_dict()
    before = r.settle(["a"])
    phase = r.drive_matches(exp, "A1", SHARD_A, 500, s.profile.a1_s, r.source(SHARD_A, "A1"))
    matches = r.settle(["a"]) - before
    exp.calibration = r.recalibrate_from(phase, matches).to_dict()
    return exp


def _a_run(s: Suite, exp_id: str, title: str, duration: float, events=()) -> ExperimentRecord:
    r = s.runner(Topology.SINGLE)
    exp = ExperimentRecord(exp_id, title, "ASR 1", SHARD_A.label, r.reset_and_seed(["a"], *SEED))
    exp.calibration = r.calibration.to_dict()
    r.drive_matches(exp, exp_id, SHARD_A, 1000, duration, r.source(SHARD_A, exp_id), events)
    r.settle(["a"])
    return exp


def run_a2(s: Suite) -> ExperimentRecord:
    return _a_run(s, "A2", "Normal load, 1,000 matches/min (primary ASR 1)", s.profile.a2_s)


def run_a3(s: Suite) -> ExperimentRecord:
    r = s.runner(Topology.SINGLE)
    exp = ExperimentRecord("A3", "Depth variation, 1,000 matches/min, each from an empty book", "ASR 1", SHARD_A.label,
                           "per sub-test: " + ", ".join(f"{n}/{lv}" for n, lv in A3_DEPTHS))
    exp.calibration = r.calibration.to_dict()
    for count, levels in A3_DEPTHS:
        name = f"{count}/{levels}"
        exp.notes.append(f"{name}: reset (empty book), then {r.reset_and_seed(['a'], count, levels)}")
        r.drive_matches(exp, name, SHARD_A, 1000, s.profile.a3_s, r.source(SHARD_A, f"A3-{count}"))
        r.settle(["a"])
    return exp


def run_a4(s: Suite) -> ExperimentRecord:
    r = s.runner(Topology.SINGLE)
    backend = r.stack.backend
    p = s.profile

    def pause() -> None:
        s.progress(f"[A4] broker paused at t={p.a4_pause_at_s:g} s for {p.a4_pause_for_s:g} s")
        backend.pause_broker()

    def resume() -> None:
        backend.resume_broker()
        s.progress("[A4] broker resumed")

    try:
        exp = _a_run(s, "A4", "Broker outage during 1,000 matches/min", p.a4_s,
                     events=((p.a4_pause_at_s, pause), (p.a4_pause_at_s + p.a4_pause_for_s, resume)))
    finally:
        backend.resume_broker()  # whatever happened, never leave the broker frozen
    exp.notes.append(f"broker paused at t={p.a4_pause_at_s:g} s for {p.a4_pause_for_s:g} s ({backend.name} backend)")
    return exp


def reconcile_events(s: Suite) -> tuple[int, int, int]:
    """(matches counted by shard a, distinct MATCH_EXECUTED events for shard a on the topic, duplicates)."""
    r = s.runner(Topology.SINGLE)
    expected = int(r.match_count(["a"]))
    ids = read_ids(r.stack.endpoints.broker, "matches", "matchId", "a-", expected, EVENT_RECONCILE_TIMEOUT_S)
    return expected, len(set(ids)), len(ids) - len(set(ids))


# -- ASR 2: three shards, through the gateway ---------------------------------------------


def _seed_abc(r: ExperimentRunner, per_shard: dict | None = None) -> str:
    return r.reset_and_seed(["a", "b", "c"], *SEED, per_shard=per_shard)


def run_b1(s: Suite) -> ExperimentRecord:
    r = s.runner(Topology.MULTI)
    exp = ExperimentRecord("B1", "Baseline: shard a only, 1,000 matches/min", "ASR 2", "gateway (shard a symbols)",
                           _seed_abc(r))
    r.calibrate(GATEWAY_ABC)
    before = r.settle(["a"])
    phase = r.drive_matches(exp, "B1", GATEWAY_A, 1000, s.profile.b1_s, r.source(GATEWAY_A, "B1"))
    exp.calibration = r.recalibrate_from(phase, r.settle(["a"]) - before).to_dict()
    return exp


def run_b2(s: Suite) -> ExperimentRecord:
    r = s.runner(Topology.MULTI)
    exp = ExperimentRecord("B2", "Peak sustained, ~5,040 matches/min over 12 symbols (primary ASR 2)", "ASR 2",
                           GATEWAY_ABC.label, _seed_abc(r))
    exp.calibration = r.calibration.to_dict()
    r.drive_matches(exp, "B2", GATEWAY_ABC, B2_MATCHES_PER_MIN, s.profile.b2_s, r.source(GATEWAY_ABC, "B2"))
    r.settle(["a", "b", "c"])
    return exp


def run_b3(s: Suite) -> ExperimentRecord:
    r = s.runner(Topology.MULTI)
    exp = ExperimentRecord("B3", "Ramp 1,000 -> 2,500 -> 5,000 matches/min, then hold 5,000", "ASR 2",
                           GATEWAY_ABC.label, _seed_abc(r))
    exp.calibration = r.calibration.to_dict()
    d1, d2, d3, hold = s.profile.b3_stages_s
    rate = r.order_rate
    ramp = LoadProfile.ramping(rate(1000), [(d1, rate(1000)), (d2, rate(2500)), (d3, rate(5000))])
    r.drive(exp, "ramp", GATEWAY_ABC, ramp, r.source(GATEWAY_ABC, "B3r"), None)
    r.drive_matches(exp, "hold", GATEWAY_ABC, 5000, hold, r.source(GATEWAY_ABC, "B3h"))
    r.settle(["a", "b", "c"])
    return exp


def run_b4(s: Suite) -> ExperimentRecord:
    r = s.runner(Topology.MULTI)
    exp = ExperimentRecord("B4", "Hot symbol: 80 % of 5,000 matches/min to TEST-ASSET-A", "ASR 2", GATEWAY_ABC.label,
                           _seed_abc(r, per_shard={"a": (2000, 100)}))
    exp.calibration = r.calibration.to_dict()
    source = r.source(GATEWAY_ABC, "B4", mix=hot_symbol_mix("TEST-ASSET-A"))
    r.drive_matches(exp, "B4", GATEWAY_ABC, 5000, s.profile.b4_s, source)
    r.settle(["a", "b", "c"])
    return exp


def run_b5(s: Suite) -> ExperimentRecord:
    """Shard isolation: the same load on shard a, first with shard b idle, then with b loaded."""
    r = s.runner(Topology.MULTI)
    exp = ExperimentRecord("B5", "Shard isolation: shard a at 1,000/min, shard b idle then at 3,000/min", "ASR 2",
                           "gateway", _seed_abc(r))
    exp.calibration = r.calibration.to_dict()
    a_rate, b_rate = r.order_rate(1000), r.order_rate(3000)
    duration = s.profile.isolation_s
    r.drive(exp, "b-idle", GATEWAY_A, LoadProfile.constant(a_rate, duration), r.source(GATEWAY_A, "B5i"), 1000)
    both = Route(("a", "b"), via_gateway=True)
    a_src, b_src = r.source(GATEWAY_A, "B5a"), r.source(Route(("b",), True), "B5b")
    share = a_rate / (a_rate + b_rate)
    counter = [0.0]

    def mixed():  # interleave a's and b's flows at their rates' proportion
        counter[0] += share
        if counter[0] >= 1.0:
            counter[0] -= 1.0
            return a_src()
        return b_src()

    r.drive(exp, "b-loaded", both, LoadProfile.constant(a_rate + b_rate, duration), mixed, 4000)
    r.settle(["a", "b"])
    return exp


# -- headroom: capacity search (not part of the ASR verdicts) --------------------------------

CAPACITY_RATES = (100, 200, 400, 700, 1000, 1300, 1600, 2000, 2500, 3000, 4000, 5000)
KNEE_P99_MS = 200.0
GOOD_P99_MS = 50.0
KNEE_ERROR_RATIO = 0.01


def _capacity(s: Suite, exp_id: str, topology: Topology, route: Route) -> ExperimentRecord:
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


def run_c1(s: Suite) -> ExperimentRecord:
    return _capacity(s, "C1", Topology.SINGLE, SHARD_A)


def run_c2(s: Suite) -> ExperimentRecord:
    return _capacity(s, "C2", Topology.MULTI, GATEWAY_ABC)


# -- verdicts ------------------------------------------------------------------------------


EXPERIMENTS: dict[str, _Entry] = {
    "A1": _Entry(Topology.SINGLE, run_a1, lambda s, e: []),
    "A2": _Entry(Topology.SINGLE, run_a2, lambda s, e: criteria.a2_verdicts(s.prom(Topology.SINGLE), s.run_id, e, s.profile), ("A1",)),
    "A3": _Entry(Topology.SINGLE, run_a3, lambda s, e: criteria.a3_verdicts(s.prom(Topology.SINGLE), e, s.profile), ("A1",)),
    "A4": _Entry(Topology.SINGLE, run_a4,
                 lambda s, e: criteria.a4_verdicts(s.prom(Topology.SINGLE), e, s.profile, lambda: reconcile_events(s)), ("A1",)),
    "B1": _Entry(Topology.MULTI, run_b1, lambda s, e: []),
    "B2": _Entry(Topology.MULTI, run_b2,
                 lambda s, e: criteria.b2_verdicts(s.prom(Topology.MULTI), s.run_id, e, s.record.experiments.get("B1"), s.profile),
                 ("B1",)),
    "B3": _Entry(Topology.MULTI, run_b3,
                 lambda s, e: criteria.b3_verdicts(s.prom(Topology.MULTI), e, s.profile)
                 + criteria.memory_verdicts(s.prom(Topology.MULTI), s.experiment("B2").start, e.end), ("B1", "B2")),
    "B4": _Entry(Topology.MULTI, run_b4, lambda s, e: criteria.b4_verdicts(s.prom(Topology.MULTI), e, s.profile), ("B1",)),
    "B5": _Entry(Topology.MULTI, run_b5, lambda s, e: criteria.isolation_verdicts(s.prom(Topology.MULTI), e, s.profile), ("B1",)),
    "C1": _Entry(Topology.SINGLE, run_c1, lambda s, e: []),
    "C2": _Entry(Topology.MULTI, run_c2, lambda s, e: []),
}
