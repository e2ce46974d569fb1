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
    """The pooled p99's rise from baseline to treated arms, with its (1 - alpha) bootstrap interval over
    units (``compare.blocks``), the rank test's cross-check, and what more cycles would resolve."""
    baselines, treated = log.phases(exp, False), log.phases(exp, True)
    treated_n = len(treated)
    baselines = baselines[: treated_n + 1]
    if not treated or len(baselines) < treated_n + 1:
        return Measurement(None, "no complete cycle", "the run ended before a treated arm and the baseline after it")
    series = read_blocks(prom, f'shard="{shard}"', baselines[0].start - 10, baselines[-1].end + 10)
    arms = [[b.counts for b in series.within(p.start + GUARD_S, p.end + TAIL_S)] for p in (*baselines, *treated)]
    units = units_from_arms(arms[: treated_n + 1], arms[treated_n + 1:]) if series.cells is not None else []
    rise = block_rise(series.cells, units, 0.99, alpha) if units else None
    query = f"quantile 0.99 of {series.query}, pooled per arm"
    if rise is None:
        return Measurement(None, query, f"shard {shard}: no blocks with orders in the arms ({len(series.blocks)} "
                                        "blocks read)")
    rank = rise.rank
    detail = (f"shard {shard} p99 {render(rise.base, LATENCY)} in the baselines, {render(rise.treated, LATENCY)} "
              f"{_treated_words(log)}: {rise.estimate:+.1%} (pooled over {rise.units} blocks each side; bootstrap "
              f"over units of a treated block and the baseline blocks either side)")
    if rank is not None:
        detail += (f"; rank check: signed-rank p={rank.p_value:.2g}, Hodges-Lehmann {rank.estimate:+.1%} "
                   f"[{rank.low:+.1%}, {rank.high:+.1%}]")
    undecidable = _cross_check(comparison, bar, rise, rank)
    pooled_base = sum((u.before + u.after) / 2 for u in units)
    pooled_treated = sum(u.treated for u in units)
    # "base"/"other": the pooled buckets either side, which a comparison of two runs reads (matchlab.compare).
    evidence = {"kind": "block_rise", "q": 0.99, "shard": shard, "low": rise.low, "high": rise.high,
                "level": rise.level, "units": rise.units, "cycles": rise.cycles,
                "rank": None if rank is None else rank.__dict__,
                "base": as_buckets(series.cells, pooled_base).to_dict(),
                "other": as_buckets(series.cells, pooled_treated).to_dict()}
    return Measurement(rise.estimate, query, detail, interval=(rise.low, rise.high), level=rise.level,
                       n=rise.orders_treated, blocks=rise.units, cycles=rise.cycles,
                       window=(baselines[0].start, baselines[-1].end), evidence=evidence, undecidable=undecidable,
                       what_would_decide=_more_cycles(rise.estimate, rise.half_width, rise.units, bar, design))


def _treated_words(log: CycleLog) -> str:
    return "in the treated arms" if log.treatment == SHAM else f"with the {log.treatment}"


def _cross_check(comparison: str, bar: float, rise, rank) -> str:
    """Non-empty unless the rank test on the blocks puts the change on the bootstrap's side of the bar too.

    A pooled tail is swayed by its heaviest blocks, and a bootstrap over a dozen or two units runs short of
    its stated confidence when a few blocks carry a disk's bad seconds; the rank test is not swayed by any
    one block. A decision needs both."""
    side = interval_side(comparison, bar, rise.low, rise.high)
    if side is Status.INCONCLUSIVE:
        return ""
    if rank is None:
        return "too few units for the rank test that must confirm the bootstrap: these data cannot decide"
    if interval_side(comparison, bar, rank.low, rank.high) is not side:
        return (f"the bootstrap of the pooled p99 says {side.value} but the rank test on the blocks does not confirm "
                f"it (one heavy block can sway a pooled tail): these data cannot decide")
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
    processes = getattr(stack.backend, "processes", None)
    running = {n: proc.pid for n, proc in (processes() if callable(processes) else {}).items() if proc.pid}
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
