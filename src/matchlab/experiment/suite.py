"""One executor for the catalog's experiments (``catalog.EXPERIMENTS``), their dependencies and their verdicts.

``Suite`` runs each experiment at most once per session, on demand and in
dependency order (A2 needs A1's warm-up and calibration; the ASR 2
criteria need B1's baseline), whatever its design: load phases, a
comparison in cycles, or a capacity search. It caches the record and the
verdicts, judges every registry criterion of an experiment through the
measure the catalog pairs it with (``measures.decide``), and re-raises a
failed dependency's error for everything that needs it. The pytest modules
are thin wrappers over ``experiment()`` and ``verdict()``.
"""

from __future__ import annotations

from collections.abc import Callable

from matchlab.experiment import criteria
from matchlab.experiment import registry as reg
from matchlab.experiment.catalog import EXPERIMENTS, MEASURES, Experiment, MatchPhase, Phases, RampPhase, Search
from matchlab.experiment.comparisons import PROBE_ORDERS_PER_S, Comparison, run_comparison
from matchlab.experiment.criteria import Context
from matchlab.experiment.measures import decide
from matchlab.experiment.profiles import ProfileSettings
from matchlab.experiment.record import ExperimentRecord, RunRecord
from matchlab.experiment.runner import MARGIN_SPREAD_S, ExperimentRunner
from matchlab.loadgen.fill_forecast import orders_due
from matchlab.loadgen.profile import LoadProfile
from matchlab.observe.events import count_events_between, read_ids
from matchlab.observe.verdicts import Verdict, worst_of_repetitions
from matchlab.stack.spec import Topology
from matchlab.stack.stack import Stack

EVENT_RECONCILE_TIMEOUT_S = 120.0
EVENT_WINDOW_TIMEOUT_S = 30.0


def criteria_of(profile: ProfileSettings, exp_id: str) -> list:
    """The registry's criteria of one experiment, in registry order."""
    return [c for c in reg.build(profile).values() if c.experiment == exp_id]


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
        spec = EXPERIMENTS[exp_id]
        for dep in spec.needs:
            self.experiment(dep)
        samples = []
        try:
            for k in range(1, self.repeat + 1):
                self._repetition = f"{k}/{self.repeat}" if self.repeat > 1 else None
                self.progress(f"--- experiment {exp_id} ({self.profile.name} profile) ---")
                samples.append(self._run(spec))  # each run resets and seeds the books it uses first
        except BaseException as exc:
            self._errors[exp_id] = exc
            raise
        finally:
            self._repetition = None
        exp = samples[0]
        exp.repetitions = samples[1:]
        self.record.experiments[exp_id] = exp
        self.on_experiment(exp, self.runner(spec.topology).stack)
        return exp

    @property
    def failed_experiments(self) -> list[str]:
        return list(self._errors)

    def verdicts(self, exp_id: str) -> list[Verdict]:
        if exp_id not in self._verdicts:
            exp = self.experiment(exp_id)
            verdicts = worst_of_repetitions([self.judge(e) for e in exp.samples])
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

    def ctx(self, exp: ExperimentRecord) -> Context:
        return self.context(EXPERIMENTS[exp.id].topology)

    # -- judging -------------------------------------------------------------------

    def judge(self, exp: ExperimentRecord) -> list[Verdict]:
        """Every registry criterion of the experiment, each measured by its catalog measure and decided alike."""
        out = []
        for crit in criteria_of(self.profile, exp.id):
            measured = MEASURES[crit.id](self, exp)
            out.append(measured if isinstance(measured, Verdict) else decide(crit, measured))
        return out

    def reconcile_events(self, exp: ExperimentRecord) -> tuple[int, int, int]:
        """(matches counted by the compared shard, distinct MATCH_EXECUTED events for it on the topic, duplicates)."""
        r = self.runner(EXPERIMENTS[exp.id].topology)
        shard = exp.cycles.shard if exp.cycles else "a"
        expected = int(r.match_count([shard]))
        ids = read_ids(r.stack.endpoints.broker, "matches", "matchId", f"{shard}-", expected, EVENT_RECONCILE_TIMEOUT_S)
        return expected, len(set(ids)), len(ids) - len(set(ids))

    def count_events(self, windows: dict[str, tuple[float, float]], want: int) -> int:
        """Events stamped in each shard's window; ``want`` (the count Prometheus saw) lets the read stop early."""
        broker = self.runner(Topology.MULTI).stack.endpoints.broker
        return count_events_between(broker, "matches", windows, EVENT_WINDOW_TIMEOUT_S, want)

    def replica_fills(self, exp: ExperimentRecord) -> Callable[[dict[str, tuple[float, float]]], dict[str, int] | None]:
        """Per shard, the fills a replica of the seeded books makes with the orders the schedule sent between that
        shard's two scrapes (the forecast the phase's rate came from)."""
        runner = self.runner(EXPERIMENTS[exp.id].topology)
        found = runner.replicas.get(exp.id)

        def fills(spans: dict[str, tuple[float, float]]) -> dict[str, int] | None:
            if found is None:
                return None
            forecast, start, rate, sent = found
            symbols = runner.stack.endpoints.shard_symbols
            out = {}
            for shard, (t0, t1) in spans.items():
                first, last = (orders_due(t, start, rate, sent) for t in (t0, t1))
                made = forecast.fills_by_symbol(first, last)
                out[shard] = sum(made.get(sym, 0) for sym in symbols.get(shard, ()))
            return out

        return fills

    # -- running ------------------------------------------------------------------

    def _run(self, spec: Experiment) -> ExperimentRecord:
        if isinstance(spec.design, Search):
            return spec.design.run(self)
        r = self.runner(spec.topology)
        seeded = "per phase (see the notes)" if spec.seed is None else r.reset_and_seed(
            list(spec.seed.shards), *spec.seed.per_symbol, per_shard=dict(spec.seed.overrides) or None)
        route = spec.design.route if isinstance(spec.design, Comparison) else spec.design.phases[0].route
        exp = ExperimentRecord(spec.id, spec.title, spec.asr, route.label, seeded)
        if isinstance(spec.design, Comparison):
            self._compare(spec, exp, spec.design)
        else:
            self._phases(spec, exp, spec.design, r)
        return exp

    def _compare(self, spec: Experiment, exp: ExperimentRecord, design: Comparison) -> None:
        crit = reg.build(self.profile)[design.criterion]
        cycles = getattr(self.profile, design.cycles)

        def judge(e: ExperimentRecord, _log, alpha: float) -> Verdict:
            """The look's verdict: the rise's measure at that look's error rate."""
            return decide(crit, criteria.rise(self.ctx(e), design.criterion, e, cycles, alpha))

        run_comparison(self, exp, design, spec.topology, judge, crit.threshold)
        log = exp.cycles
        exp.notes.append(f"{log.treatment}; {log.design}; {log.stopped}")
        exp.notes.append(f"every arm: the ASR's {design.matches_per_min:,.0f} matches/min plus {PROBE_ORDERS_PER_S:g} "
                         f"orders/s of probe traffic on shard {design.shard} (the samples its block p99s need)"
                         + (f"; treated arms add {design.load_matches_per_min:,.0f} matches/min on shard "
                            f"{','.join(design.load_on.shards)}" if design.load_on else ""))
        exp.notes.append(f"CPUs: {log.isolation}")

    def _phases(self, spec: Experiment, exp: ExperimentRecord, design: Phases, r: ExperimentRunner) -> None:
        p = self.profile
        if design.calibrate_on is not None:
            r.calibrate(design.calibrate_on)
        exp.calibration = r.calibration.to_dict()
        for phase in design.phases:
            shards = list(phase.route.shards)
            if isinstance(phase, RampPhase):
                durations = getattr(p, phase.durations)
                rate = r.order_rate
                ramp = LoadProfile.ramping(rate(phase.start_matches_per_min),
                                           [(durations[i], rate(mpm)) for i, mpm in phase.stages])
                r.drive(exp, phase.name, phase.route, ramp, r.source(phase.route, f"{spec.id}{phase.name[0]}"), None)
                continue
            if phase.reseed is not None:
                exp.notes.append(f"{phase.name}: reset (empty book), then {r.reset_and_seed(shards, *phase.reseed)}")
            before = r.settle(shards) if design.recalibrate else 0.0
            self._match_phase(spec, exp, phase, r)
            after = r.settle(shards)
            if design.recalibrate:
                exp.calibration = r.recalibrate_from(exp.phase(phase.name), after - before).to_dict()

    def _match_phase(self, spec: Experiment, exp: ExperimentRecord, phase: MatchPhase, r: ExperimentRunner) -> None:
        p = self.profile
        duration = getattr(p, phase.duration)
        tag = f"{spec.id}-{phase.name.replace('/', '-')}" if phase.name != spec.id else spec.id
        source = r.source(phase.route, tag, mix=phase.mix)
        if phase.margin_sigmas is not None:
            warmup = getattr(p, phase.steer_for) if phase.steer_for else p.warmup_exclusion_s
            r.drive_at_margin(exp, phase.name, phase.route, phase.matches_per_min, warmup + duration, warmup,
                              source, phase.margin_sigmas)
            exp.notes.append(f"open loop at one rate from the start, chosen so that the {p.rate_window_s} s windows "
                             f"of the orders sent make the bar plus {phase.margin_sigmas:g} standard deviations of "
                             f"the windows' spread over {MARGIN_SPREAD_S:g} s of the flow (a replica of the seeded "
                             f"books forecasts each window); the first "
                             f"{warmup:g} s excluded")
            return
        steer = getattr(p, phase.steer_for) if phase.steer_for else None
        r.drive_matches(exp, phase.name, phase.route, phase.matches_per_min, (steer or 0.0) + duration, source,
                        steer_for_s=steer)
