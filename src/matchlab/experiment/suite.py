"""The experiments of DESIGN.md §5 (A1-A4, B1-B5), their dependencies and their verdicts.

``Suite`` runs each experiment at most once per session, on demand and in
dependency order (A2 needs A1's warm-up and calibration; the ASR 2
criteria need B1's baseline), caches its record and its verdicts, and
re-raises a failed dependency's error for everything that needs it. The
pytest modules are thin wrappers over ``experiment()`` and ``verdict()``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from matchlab.experiment import criteria, searches
from matchlab.experiment.comparisons import (
    BROKER_OUTAGE,
    INJECTED_DELAY,
    LOAD_ON,
    PROBE_ORDERS_PER_S,
    SHAM,
    Comparison,
    run_comparison,
)
from matchlab.experiment.criteria import Context
from matchlab.experiment.profiles import ProfileSettings
from matchlab.experiment.record import ExperimentRecord, RunRecord
from matchlab.experiment.registry import A3_DEPTHS, depth_name
from matchlab.experiment.runner import ExperimentRunner, Route
from matchlab.loadgen.flow import hot_symbol_mix
from matchlab.loadgen.profile import LoadProfile
from matchlab.observe.events import count_events_between, read_ids
from matchlab.observe.verdicts import Verdict, worst_of_repetitions
from matchlab.stack.spec import Topology
from matchlab.stack.stack import Stack

SEED = (500, 50)  # resting orders / levels per symbol (DESIGN.md §5)
B2_MATCHES_PER_MIN = 5040.0  # 84/s as the anchor offered, a little above 5,000
EVENT_RECONCILE_TIMEOUT_S = 120.0
EVENT_WINDOW_TIMEOUT_S = 30.0

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
        repeat: int = 1,
    ) -> None:
        self.stack_for = stack_for
        self.record = record
        self.profile = profile
        self.run_id = run_id
        self._write = progress
        self.on_experiment = on_experiment
        self.repeat = repeat
        self._repetition: str | None = None  # "k/N" while repetition k of N runs
        self._runners: dict[Topology, ExperimentRunner] = {}
        self._verdicts: dict[str, list[Verdict]] = {}
        self._errors: dict[str, BaseException] = {}

    # -- plumbing ---------------------------------------------------------------

    def progress(self, line: str) -> None:
        self._write(f"[repetition {self._repetition}] {line}" if self._repetition else line)

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
        samples = []
        try:
            for k in range(1, self.repeat + 1):
                self._repetition = f"{k}/{self.repeat}" if self.repeat > 1 else None
                self.progress(f"--- experiment {exp_id} ({self.profile.name} profile) ---")
                samples.append(entry.run(self))  # each run resets and seeds the books it uses first
        except BaseException as exc:
            self._errors[exp_id] = exc
            raise
        finally:
            self._repetition = None
        exp = samples[0]
        exp.repetitions = samples[1:]
        self.record.experiments[exp_id] = exp
        self.on_experiment(exp, self.runner(entry.topology).stack)
        return exp

    @property
    def failed_experiments(self) -> list[str]:
        return list(self._errors)

    def verdicts(self, exp_id: str) -> list[Verdict]:
        if exp_id not in self._verdicts:
            exp = self.experiment(exp_id)
            verdicts = worst_of_repetitions([EXPERIMENTS[exp_id].judge(self, e) for e in exp.samples])
            self._verdicts[exp_id] = verdicts
            self.record.add_verdicts(verdicts)
            for v in verdicts:
                self.progress(v.message())
        return self._verdicts[exp_id]

    def verdict(self, criterion_id: str) -> Verdict:
        """The verdict of one registry criterion (its experiment runs first if it has not)."""
        exp_id = criterion_id.split(".")[0]
        for v in self.verdicts(exp_id):
            if v.criterion.id == criterion_id:
                return v
        raise KeyError(f"{exp_id} has no criterion {criterion_id!r}: {[v.criterion.id for v in self.verdicts(exp_id)]}")

    def context(self, topology: Topology) -> Context:
        return Context(self.runner(topology).stack.prometheus(), self.run_id, self.profile)


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


def run_a2(s: Suite) -> ExperimentRecord:
    r = s.runner(Topology.SINGLE)
    exp = ExperimentRecord("A2", "Normal load, 1,000 matches/min (primary ASR 1)", "ASR 1", SHARD_A.label,
                           r.reset_and_seed(["a"], *SEED))
    exp.calibration = r.calibration.to_dict()
    r.drive_matches(exp, "A2", SHARD_A, 1000, s.profile.a2_s, r.source(SHARD_A, "A2"))
    r.settle(["a"])
    return exp


def run_a3(s: Suite) -> ExperimentRecord:
    r = s.runner(Topology.SINGLE)
    exp = ExperimentRecord("A3", "Depth variation, 1,000 matches/min, each from an empty book", "ASR 1", SHARD_A.label,
                           "per sub-test: " + ", ".join(f"{n}/{lv}" for n, lv in A3_DEPTHS))
    exp.calibration = r.calibration.to_dict()
    for count, levels in A3_DEPTHS:
        name = depth_name(count, levels)
        exp.notes.append(f"{name}: reset (empty book), then {r.reset_and_seed(['a'], count, levels)}")
        r.drive_matches(exp, name, SHARD_A, 1000, s.profile.a3_s, r.source(SHARD_A, f"A3-{count}"))
        r.settle(["a"])
    return exp


def comparison_run(exp_id: str, title: str, asr: str, topology: Topology, spec: Comparison,
                   seed_shards: tuple[str, ...]) -> Callable[[Suite], ExperimentRecord]:
    """A catalog entry's run for a comparison (A4, B5 and their calibrations): seeded books, then cycles."""

    def run(s: Suite) -> ExperimentRecord:
        r = s.runner(topology)
        exp = ExperimentRecord(exp_id, title, asr, spec.route.label, r.reset_and_seed(list(seed_shards), *SEED))
        design = getattr(s.profile, spec.cycles)
        crit = s.context(topology).criterion(spec.criterion)

        def judge(e: ExperimentRecord, log, alpha: float) -> Verdict:
            return criteria.rise_verdict(s.context(topology), spec.criterion, e, spec.shard, design, alpha)

        run_comparison(s, exp, spec, topology, judge, crit.threshold)
        exp.notes.append(f"{exp.cycles.treatment}; {exp.cycles.design}; {exp.cycles.stopped}")
        exp.notes.append(f"every arm: the ASR's {spec.matches_per_min:,.0f} matches/min plus {PROBE_ORDERS_PER_S:g} "
                         f"orders/s of probe traffic on shard {spec.shard} (the samples its block p99s need)"
                         + (f"; treated arms add {spec.load_matches_per_min:,.0f} matches/min on shard "
                            f"{','.join(spec.load_on.shards)}" if spec.load_on else ""))
        exp.notes.append(f"CPUs: {exp.cycles.isolation}")
        return exp

    return run


A4_COMPARISON = Comparison("a", SHARD_A, 1000, BROKER_OUTAGE, "a4_cycles", "A4.decoupling", ("base", "outage"))
B5_COMPARISON = Comparison("a", GATEWAY_A, 1000, LOAD_ON, "b5_cycles", "B5.isolation", ("b-idle", "b-loaded"),
                           load_on=Route(("b",), via_gateway=True), load_matches_per_min=3000)
# The calibrations: the same comparisons where the truth is known (DESIGN.md §6, "Calibrated").
A4_SHAM = replace(A4_COMPARISON, treatment=SHAM, criterion="A4-sham.decoupling", names=("base", "sham"))
A4_POWER = replace(A4_COMPARISON, treatment=INJECTED_DELAY, criterion="A4-power.decoupling", names=("base", "delayed"))
B5_SHAM = replace(B5_COMPARISON, criterion="B5-sham.isolation", names=("b-idle", "b-sham"), load_matches_per_min=0)

run_a4 = comparison_run("A4", "Broker outage during 1,000 matches/min (+ probe traffic), in cycles", "ASR 1",
                        Topology.SINGLE, A4_COMPARISON, ("a",))
run_a4_sham = comparison_run("A4-sham", "A4's cycles with nothing paused (calibration)", "calibration",
                             Topology.SINGLE, A4_SHAM, ("a",))
run_a4_power = comparison_run("A4-power", "A4's cycles with a match delay injected in the outage arms (calibration)",
                              "calibration", Topology.SINGLE, A4_POWER, ("a",))


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
    p = s.profile
    r.drive_matches(exp, "B2", GATEWAY_ABC, B2_MATCHES_PER_MIN, p.b2_warmup_s + p.b2_s, r.source(GATEWAY_ABC, "B2"),
                    steer_for_s=p.b2_warmup_s)
    r.settle(["a", "b", "c"])
    exp.notes.append(f"match-rate control during the first {p.b2_warmup_s:g} s only; the {p.b2_s:g} s after it run "
                     "open loop at the order rate fixed then, and the verdicts read only that window")
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
    r.drive_matches(exp, "hold", GATEWAY_ABC, 5000, hold, r.source(GATEWAY_ABC, "B3h"),
                    steer_for_s=s.profile.b3_hold_warmup_s)
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


run_b5 = comparison_run("B5", "Shard isolation: shard a at 1,000/min (+ probe), shard b idle or at 3,000/min, "
                        "in cycles", "ASR 2", Topology.MULTI, B5_COMPARISON, ("a", "b", "c"))
run_b5_sham = comparison_run("B5-sham", "B5's cycles with shard b 'loaded' at zero (calibration)", "calibration",
                             Topology.MULTI, B5_SHAM, ("a", "b", "c"))


# -- verdicts ------------------------------------------------------------------------------


def count_b2_events(s: Suite) -> Callable[[dict[str, tuple[float, float]], int], int]:
    """Events stamped in each shard's window; ``want`` (the count Prometheus saw) lets the read stop early."""
    r = s.runner(Topology.MULTI)
    return lambda windows, want: count_events_between(r.stack.endpoints.broker, "matches", windows,
                                                      EVENT_WINDOW_TIMEOUT_S, want)


SINGLE, MULTI = Topology.SINGLE, Topology.MULTI
EXPERIMENTS: dict[str, _Entry] = {
    "A1": _Entry(SINGLE, run_a1, lambda s, e: []),
    "A2": _Entry(SINGLE, run_a2, lambda s, e: criteria.a2_verdicts(s.context(SINGLE), e), ("A1",)),
    "A3": _Entry(SINGLE, run_a3, lambda s, e: criteria.a3_verdicts(s.context(SINGLE), e), ("A1",)),
    "A4": _Entry(SINGLE, run_a4, lambda s, e: criteria.a4_verdicts(s.context(SINGLE), e, lambda: reconcile_events(s)),
                 ("A1",)),
    "A4-sham": _Entry(SINGLE, run_a4_sham, lambda s, e: criteria.calibration_verdict(
        s.context(SINGLE), A4_SHAM.criterion, e, s.profile.a4_cycles), ("A1",)),
    "A4-power": _Entry(SINGLE, run_a4_power, lambda s, e: criteria.calibration_verdict(
        s.context(SINGLE), A4_POWER.criterion, e, s.profile.a4_cycles), ("A1",)),
    "B1": _Entry(MULTI, run_b1, lambda s, e: []),
    "B2": _Entry(MULTI, run_b2, lambda s, e: criteria.b2_verdicts(s.context(MULTI), e, count_b2_events(s)), ("B1",)),
    "B3": _Entry(MULTI, run_b3, lambda s, e: criteria.b3_verdicts(s.context(MULTI), e, s.experiment("B2").start),
                 ("B1", "B2")),
    "B4": _Entry(MULTI, run_b4, lambda s, e: criteria.b4_verdicts(s.context(MULTI), e), ("B1",)),
    "B5": _Entry(MULTI, run_b5, lambda s, e: criteria.b5_verdicts(s.context(MULTI), e), ("B1",)),
    "B5-sham": _Entry(MULTI, run_b5_sham, lambda s, e: criteria.calibration_verdict(
        s.context(MULTI), B5_SHAM.criterion, e, s.profile.b5_cycles), ("B1",)),
    "S1": _Entry(Topology.SCALING, searches.run_s1,
                 lambda s, e: searches.scaling_verdicts(s.context(Topology.SCALING), e)),
    "C1": _Entry(SINGLE, searches.run_c1, lambda s, e: []),
    "C2": _Entry(MULTI, searches.run_c2, lambda s, e: []),
    "C3": _Entry(SINGLE, searches.run_c3, lambda s, e: []),
    "C4": _Entry(MULTI, searches.run_c4, lambda s, e: []),  # judged by its test: its verdict is not ASR 2's
}
