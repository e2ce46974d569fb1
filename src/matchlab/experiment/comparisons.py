"""A4, B5 and their calibration runs: one shard's p99 between interleaved baseline and treated arms.

A ``Comparison`` says which shard is compared, what load runs in every arm
(the ASR's flow plus probe traffic), and what the treated arms change: the
broker paused (A4), shard b loaded (B5), nothing at all (a sham), or a
known match delay injected (the power check). ``run_comparison`` isolates
the shard on a CPU of its own where the machine allows, runs the cycles
(``cycles.run_cycles``) and keeps their log in the record;
``rise_measurement`` reads the arms' blocks from Prometheus and measures the
pooled p99's rise with its interval (``compare.blocks``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import httpx

from matchlab.compare.blocks import block_rise, quantiles, units_from_arms
from matchlab.experiment.cycle_design import BROKER_OUTAGE, GUARD_S, TAIL_S, CycleDesign
from matchlab.experiment.cycles import CycleLog, NoTreatment, Treatment, run_cycles
from matchlab.experiment.measures import Measurement, interval_side
from matchlab.experiment.record import ExperimentRecord
from matchlab.experiment.runner import Route
from matchlab.experiment.scrape_blocks import as_buckets, read_blocks, scrape_grid
from matchlab.loadgen.profile import LoadProfile
from matchlab.loadgen.targets import interleave
from matchlab.observe.promql import PromClient
from matchlab.observe.verdicts import LATENCY, Status, render
from matchlab.stack.cpusets import CpuSets
from matchlab.stack.stack import Stack

INJECTED_DELAY = "injected match delay"
LOAD_ON = "load on shard"
SHAM = "sham (nothing changed)"
DRAIN_TIMEOUT_S = 60.0
DRAIN_POLL_S = 0.2
# The power check injects a delay that raises the baseline p99 by this many times the bar.
POWER_FACTOR = 3.0


@dataclass(frozen=True)
class Comparison:
    """How a relative criterion is measured (the catalog's design for A4, B5 and their calibrations)."""

    shard: str  # whose p99 is compared
    route: Route  # where every arm's load goes (the ASR's flow plus probe traffic)
    matches_per_min: float  # the ASR's flow
    treatment: str  # BROKER_OUTAGE, LOAD_ON, INJECTED_DELAY or SHAM
    cycles: str  # the profile's CycleDesign for it ("a4_cycles", "b5_cycles")
    criterion: str  # the registry id of the rise
    names: tuple[str, str] = ("base", "treated")  # arm phase names: baseline, treated
    load_on: Route | None = None  # LOAD_ON: the treated arms add this route's flow ...
    load_matches_per_min: float = 0.0  # ... at this match rate (0: a sham of it, b "loaded" at zero)


class BrokerOutage:
    """The broker frozen (SIGSTOP, docker pause, scaled to 0): orders are still taken, events wait."""

    name = BROKER_OUTAGE

    def __init__(self, stack: Stack, shard: str) -> None:
        self.stack, self.shard = stack, shard

    def begin(self) -> None:
        self.stack.backend.pause_broker()

    def end(self) -> None:
        self.stack.backend.resume_broker()

    def recover(self) -> str:
        """Wait until the shard has no events waiting for the broker (its outbox drained)."""
        t0 = time.monotonic()
        pending = -1
        while time.monotonic() - t0 < DRAIN_TIMEOUT_S:
            pending = events_pending(self.stack, self.shard)
            if pending == 0:
                return f"events drained {time.monotonic() - t0:.1f} s after the broker came back"
            time.sleep(DRAIN_POLL_S)
        return f"{pending} events still waited {DRAIN_TIMEOUT_S:g} s after the broker came back"


class InjectedDelay:
    """A known effect: every order waits ``delay_ms`` between durable and matched, in treated arms only."""

    name = INJECTED_DELAY

    def __init__(self, stack: Stack, shard: str, delay_ms: float) -> None:
        self.stack, self.shard, self.delay_ms = stack, shard, delay_ms

    def begin(self) -> None:
        self.stack.inject_match_delay(self.shard, self.delay_ms)

    def end(self) -> None:
        self.stack.inject_match_delay(self.shard, 0.0)

    def recover(self) -> str:
        return ""


def events_pending(stack: Stack, shard: str) -> int:
    resp = httpx.get(f"{stack.endpoints.shards[shard]}/admin/stats", headers=stack.endpoints.admin_headers,
                     timeout=10.0)
    resp.raise_for_status()
    return int(resp.json()["eventsPending"])


def treatment_for(spec: Comparison, stack: Stack, delay_ms: float = 0.0) -> Treatment:
    if spec.treatment == BROKER_OUTAGE:
        return BrokerOutage(stack, spec.shard)
    if spec.treatment == INJECTED_DELAY:
        return InjectedDelay(stack, spec.shard, delay_ms)
    if spec.treatment == LOAD_ON:
        return NoTreatment(f"{LOAD_ON} {','.join(spec.load_on.shards)}" if spec.load_on else LOAD_ON)
    return NoTreatment(SHAM)


def power_delay_ms(base_p99_s: float, bar: float) -> float:
    """A whole-millisecond delay that raises ``base_p99_s`` by at least POWER_FACTOR x ``bar``
    (event-loop timers keep whole milliseconds)."""
    return float(max(1, math.ceil(POWER_FACTOR * bar * base_p99_s * 1000)))


def rise_measurement(prom: PromClient, exp: ExperimentRecord, log: CycleLog, shard: str, alpha: float,
                     design: CycleDesign, comparison: str, bar: float) -> Measurement:
    """The p99's rise from the baseline arms to the treated arms, decided on the blocks paired by cycle.

    Each unit (a treated block and the baseline blocks either side) gives the treated block's p99 over the
    geometric mean of its baselines'; the estimate is the Hodges-Lehmann median of those ratios, its
    (1 - alpha) interval the Wilcoxon signed-rank test's. The pooled p99 of all treated blocks over that of
    all baseline blocks, with a bootstrap over units, is the cross-check: it must not put the change on the
    other side of the bar. Why the blocks decide and not the pool: on a disk whose fsync tail comes in bad
    seconds, a pooled p99 over minutes is set by the few worst blocks either arm happened to get (over one
    hour here its interval ran +-37 to +-74 % at 15 units a side, while the paired blocks' ran +-15 to
    +-45 % and caught a 1 ms injected delay that the pool missed)."""
    baselines, treated = log.phases(exp, False), log.phases(exp, True)
    treated_n = len(treated)
    baselines = baselines[: treated_n + 1]
    if not treated or len(baselines) < treated_n + 1:
        return Measurement(None, "no complete cycle", "the run ended before a treated arm and the baseline after it")
    series = read_blocks(prom, f'shard="{shard}"', baselines[0].start - 10, baselines[-1].end + 10)
    in_order = [exp.phase(a.phase) for a in log.arms]
    by_arm = series.arms([(p.start, p.load_end) for p in in_order], GUARD_S, TAIL_S)
    counts = dict(zip((p.name for p in in_order), by_arm))
    arms = [counts[p.name] for p in (*baselines, *treated)]
    units = units_from_arms(arms[: treated_n + 1], arms[treated_n + 1:]) if series.cells is not None else []
    pooled = block_rise(series.cells, units, 0.99, alpha) if units else None
    query = f"quantile 0.99 of each block of {series.query}, paired by cycle"
    if pooled is None:
        return Measurement(None, query, f"shard {shard}: no blocks with orders in the arms ({len(series.blocks)} "
                                        "blocks read)")
    rank = pooled.rank
    detail = (f"shard {shard}: pooled p99 {render(pooled.base, LATENCY)} in the baselines, "
              f"{render(pooled.treated, LATENCY)} {_treated_words(log)}, {pooled.estimate:+.1%} (bootstrap "
              f"{pooled.low:+.1%} to {pooled.high:+.1%})")
    pooled_base = sum((u.before + u.after) / 2 for u in units)
    pooled_treated = sum(u.treated for u in units)
    # "base"/"other": the pooled buckets either side, which a comparison of two runs reads (matchlab.compare).
    evidence = {"kind": "block_rise", "q": 0.99, "shard": shard, "units": pooled.units, "cycles": pooled.cycles,
                "pooled": {"estimate": pooled.estimate, "low": pooled.low, "high": pooled.high},
                "base": as_buckets(series.cells, pooled_base).to_dict(),
                "other": as_buckets(series.cells, pooled_treated).to_dict()}
    common = {"n": pooled.orders_treated, "blocks": pooled.units, "cycles": pooled.cycles, "evidence": evidence,
              "window": (baselines[0].start, baselines[-1].end)}
    if rank is None:
        return Measurement(pooled.estimate, query, detail, **common,
                           undecidable=f"{pooled.units} units: the paired test needs at least 5")
    evidence.update(low=rank.low, high=rank.high, level=1 - alpha, p_value=rank.p_value)
    detail = (f"paired blocks: the treated block's p99 over its baselines' {rank.estimate:+.1%} (Hodges-Lehmann, "
              f"signed-rank p={rank.p_value:.2g}); " + detail + _fell_beyond(comparison, bar, rank.high, log))
    return Measurement(rank.estimate, query, detail, interval=(rank.low, rank.high), level=1 - alpha, **common,
                       undecidable=_cross_check(comparison, bar, rank, pooled),
                       what_would_decide=_more_cycles(rank.estimate, (rank.high - rank.low) / 2, rank.units, bar,
                                                      design))


def _fell_beyond(comparison: str, bar: float, high: float, log: CycleLog) -> str:
    """A one-sided bar passes a p99 that falls; one that fell by more than the bar, beyond doubt, is said: the
    shard's work depends on what the treatment stopped (a shard that publishes its own events runs faster with
    the broker out), a cost in every baseline arm that a bar on rises does not judge."""
    if comparison not in ("<=", "<") or high >= -bar:
        return ""
    return (f"; the p99 fell by more than {bar:.0%} {_treated_words(log)} (interval's top {high:+.1%}): the shard's "
            "work depends on what the treatment stops, a cost its baseline pays and this bar on rises does not judge")


def _treated_words(log: CycleLog) -> str:
    return "in the treated arms" if log.treatment == SHAM else f"with the {log.treatment}"


def _cross_check(comparison: str, bar: float, rank, pooled) -> str:
    """Non-empty when the pooled p99's bootstrap puts the change wholly on the other side of the bar: the
    tail's few worst blocks say otherwise than the typical block, and the data cannot decide."""
    sides = {interval_side(comparison, bar, rank.low, rank.high), interval_side(comparison, bar, pooled.low, pooled.high)}
    if sides == {Status.PASS, Status.FAIL}:
        return ("the paired blocks and the pooled p99 put the change on opposite sides of the bar (a few heavy blocks "
                "carry the pool): these data cannot decide")
    return ""


def _more_cycles(estimate: float, half_width: float, units: int, bar: float, design: CycleDesign) -> str:
    """How many cycles would resolve the bar if the estimate held (the half-width shrinks as 1/sqrt(units))."""
    gap = abs(bar - abs(estimate))
    if gap <= 0 or half_width <= 0:
        return "the estimate sits on the bar: no run length would decide it"
    need = math.ceil(units * (half_width / gap) ** 2 / design.blocks_per_arm)
    return f"about {need} cycles at this noise would, if the estimate held (cap {design.looks.cap})"


# -- running one ------------------------------------------------------------------------------------------------

# Probe traffic: a documented side load on the compared shard. At the ASRs' ~17-28 orders/s a 5 s block holds
# a hundred orders, whose p99 is set by the one or two slowest; with the probe it holds ~2,600. The probe's
# orders are the same stationary flow and count toward nothing but those p99s' sample sizes (at 800/s, a sham's
# interval over 12 units was half as wide as at 200/s in the same hour, with the disk the same).
PROBE_ORDERS_PER_S = 500.0


def run_comparison(s, exp: ExperimentRecord, spec: Comparison, topology, judge, bar: float) -> ExperimentRecord:
    """Warm up, isolate the compared shard, run the cycles until a look decides; ``judge(exp, log, alpha)`` is
    the rise criterion's verdict at a look, ``bar`` its threshold (the power check's delay is sized from it).
    ``s`` is the Suite (its runner, profile, run id and progress)."""
    r = s.runner(topology)
    stack, p = r.stack, s.profile
    design: CycleDesign = getattr(p, spec.cycles)
    exp.calibration = r.calibration.to_dict()
    asr_rate = r.order_rate(spec.matches_per_min)
    base_rate = asr_rate + PROBE_ORDERS_PER_S
    base = interleave([(asr_rate, r.source(spec.route, exp.id)), (PROBE_ORDERS_PER_S, r.source(spec.route, f"{exp.id}p"))])
    extra = None
    if spec.load_on is not None and spec.load_matches_per_min > 0:
        extra = (r.order_rate(spec.load_matches_per_min), r.source(spec.load_on, f"{exp.id}l"))

    def arm_load(treated: bool):
        if treated and extra is not None:
            return base_rate + extra[0], interleave([(base_rate, base), (extra[0], extra[1])])
        return base_rate, base

    labels = {"app": "matching-engine", "shard": spec.shard}
    prom = stack.prometheus()

    def grid():
        found = scrape_grid(prom, labels)
        if found is None:
            raise RuntimeError(f"Prometheus has not scraped shard {spec.shard} yet: no scrape grid to align arms to")
        return found

    def scraped() -> None:
        if not prom.wait_for_scrapes(lambda lab: all(lab.get(k) == v for k, v in labels.items()), 2 * grid().interval_s + 2):
            s.progress(f"[{exp.id}] warning: no scrape of shard {spec.shard} after the arm; the look reads what is there")

    warm = r.drive(exp, "warm-up", spec.route, LoadProfile.constant(base_rate, max(p.warmup_exclusion_s, 5.0)), base,
                   None, marks={"measured": max(p.warmup_exclusion_s, 5.0)})
    delay_ms = 0.0
    if spec.treatment == INJECTED_DELAY:
        delay_ms = power_delay_ms(max(warm.load.latency_ms["p99"], 0.1) / 1000, bar)
    treatment = treatment_for(spec, stack, delay_ms)
    log = CycleLog(treatment.name + (f" of {delay_ms:g} ms" if delay_ms else ""), design.describe(grid().interval_s),
                   grid().interval_s, spec.shard)
    running = {n: proc.pid for n, proc in stack.backend.processes().items() if proc.pid}
    sut = {n: pid for n, pid in running.items() if n == f"me-shard-{spec.shard}"}
    cpusets = CpuSets(s.run_id)
    if sut:
        isolation = cpusets.isolate(sut, {n: pid for n, pid in running.items() if n not in sut})
        log.isolation = isolation.describe()
    else:
        log.isolation = (f"not isolated: the {stack.backend.name} backend does not expose its processes to this "
                         "machine (on Kubernetes, requests equal to limits give the shard Guaranteed QoS)")
    s.progress(f"[{exp.id}] {log.treatment}; {log.design}; {log.isolation}")
    exp.cycles = log  # filled as the cycles run: each look reads it
    try:
        run_cycles(r, exp, spec.route, design=design, treatment=treatment, arm_load=arm_load,
                   judge=lambda lg, alpha: judge(exp, lg, alpha), grid=grid, wait_for_scrape=scraped,
                   names=spec.names, log=log)
    finally:
        treatment.end()  # whatever happened, never leave the broker frozen or a delay on
        cpusets.close()
    s.progress(f"[{exp.id}] {log.stopped}")
    r.settle([spec.shard] + (list(spec.load_on.shards) if spec.load_on else []))
    return exp



# -- attribution: what else moved between the arms (detail, never a verdict) ----------------------------------------

ATTRIBUTED_HISTOGRAMS = (
    ("the journal's write + fsync", "me_wal_sync_duration_seconds"),
    ("handing events to the producer", "me_event_publish_duration_seconds"),
    ("event-loop lag", "me_loop_lag_seconds"),
)


def attribution(prom: PromClient, exp: ExperimentRecord, log: CycleLog) -> str:
    """Baseline vs treated arms: the shard's other p99s (journal, event hand-off, loop lag), its journal commits
    inline vs on the thread, and every scraped process's CPU; metrics a shard does not export are left out."""
    base, treated = log.phases(exp, False), log.phases(exp, True)
    if not base or not treated:
        return ""
    parts = []
    for label, metric in ATTRIBUTED_HISTOGRAMS:
        series = read_blocks(prom, f'shard="{log.shard}"', base[0].start - 10, base[-1].end + 10, metric)
        if series.cells is None:
            continue
        pooled = [sum((b.counts for p in arms for b in series.within(p.start + GUARD_S, p.end + TAIL_S)), 0.0)
                  for arms in (base, treated)]
        if any(isinstance(c, float) or not c.sum() for c in pooled):
            continue
        a, b = (quantiles(series.cells, c, 0.99)[0] for c in pooled)
        parts.append(f"{label} p99 {render(a, LATENCY)} -> {render(b, LATENCY)}")
    commits = _per_arm_rate(prom, f'me_wal_commits_total{{shard="{log.shard}"}}', base, treated, "mode")
    if commits:
        parts.append("journal commits/s " + ", ".join(f"{mode} {a:,.0f} -> {b:,.0f}" for mode, (a, b) in commits.items()))
    cpu = _per_arm_rate(prom, "process_cpu_seconds_total", base, treated, "job")
    if cpu:
        parts.append("CPU (cores) " + ", ".join(f"{job} {a:.2f} -> {b:.2f}" for job, (a, b) in sorted(cpu.items())))
    return ("baseline -> treated arms: " + "; ".join(parts)) if parts else ""


def _per_arm_rate(prom: PromClient, selector: str, base, treated, by: str) -> dict[str, tuple[float, float]]:
    """A counter's mean rate per second over the baseline arms and over the treated arms, by a label."""
    totals: list[dict[str, float]] = []
    for arms in (base, treated):
        sums: dict[str, float] = {}
        seconds = 0.0
        for p in arms:
            span = max(5, round(p.end - p.start))
            for series in prom.query_matrix(f"{selector}[{span}s]", at=p.end):
                if len(series.points) >= 2:
                    key = series.labels.get(by, "")
                    sums[key] = sums.get(key, 0.0) + series.points[-1][1] - series.points[0][1]
            seconds += span
        totals.append({k: v / seconds for k, v in sums.items()} if seconds else {})
    return {k: (totals[0].get(k, 0.0), totals[1].get(k, 0.0)) for k in set(totals[0]) | set(totals[1])}
