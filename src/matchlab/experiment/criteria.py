"""The measures behind the criteria: each reads Prometheus over an experiment's own windows and returns a
typed ``Measurement`` (``measures.decide`` turns it into the verdict, by one rule for all).

Every measurement keeps the exact query it was computed from, a detail line
with the numbers behind it, its interval where the data give one and, where
the experiment itself says the data cannot decide or the evidence does not
hold together, why. The catalog (``catalog.py``) pairs each registry
criterion with its measure.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

from matchlab.compare.blocks import pooled_quantile
from matchlab.experiment import registry as reg
from matchlab.experiment.comparisons import attribution, rise_measurement
from matchlab.experiment.cycle_design import GUARD_S, TAIL_S, CycleDesign
from matchlab.experiment.evidence import (
    SCRAPE_S,
    counter_delta,
    counter_increase,
    depth_excursion,
    queue_fill,
    remote_written,
)
from matchlab.experiment.measures import Measurement
from matchlab.experiment.profiles import ProfileSettings
from matchlab.experiment.record import ExperimentRecord, PhaseRecord
from matchlab.experiment.scrape_blocks import as_buckets, read_blocks
from matchlab.loadgen.run_label import run_matcher
from matchlab.observe.promql import PromClient
from matchlab.observe.verdicts import LATENCY, RATIO, Criterion, mann_kendall, render, sustained

MAX_SIDES_DISAGREEMENT = 0.01  # client and server error ratios may differ by one percentage point
MIN_BLOCKS_FOR_INTERVAL = 4  # a window's p99 interval comes from its blocks when it has this many
Z_95 = 1.96


@dataclass(frozen=True)
class Context:
    """What every criterion of a run needs: Prometheus, the run's id, the profile and the registry."""

    prom: PromClient
    run_id: str
    profile: ProfileSettings

    def criterion(self, id_: str) -> Criterion:
        return reg.build(self.profile)[id_]


def measured_window(phase: PhaseRecord, profile: ProfileSettings) -> tuple[float, float]:
    """The phase's measured part (open loop, after its warm-up), to the scrape after the load stopped."""
    start = phase.marks.get("measured", phase.start + profile.warmup_exclusion_s)
    return start, phase.end + SCRAPE_S


def client_p99_note(phase: PhaseRecord) -> str:
    lat = phase.load.latency_ms
    return (f"client-side (from scheduled send): p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms over {lat['count']} "
            f"requests{unsteered_note(phase)}")


def unsteered_note(phase: PhaseRecord) -> str:
    """For a match-rate phase whose load ran out of the host's reach: it ran at the calibrated rate, unsteered."""
    if phase.extra.get("steered", True):
        return ""
    f = phase.extra.get("fill_forecast") or {}
    how = f": {forecast_note(phase).removesuffix('; ')}" if f.get("used") else ", as calibrated"
    return (f"; not steered to the match rate: {phase.extra['fixed_order_rate']:,.1f} orders/s throughout (load from "
            f"{phase.load.extra.get('load_from', 'elsewhere')}){how}")


def forecast_note(phase: PhaseRecord) -> str:
    """How the open-loop window's order rate was chosen: from the flow's forecast fills, or from the warm-up's."""
    f = phase.extra.get("fill_forecast") or {}
    if "warmup_orders" in f:
        warmup = (f"the warm-up's {f['warmup_orders']:,} orders made {f['warmup_matches']:,} matches, the replica "
                  f"{f['warmup_forecast']:,}")
        if not f.get("agreed", True):
            warmup += ": they disagree, so the window may have offered other than the target"
    else:
        warmup = "the warm-up's matches not read"
    if f.get("used"):
        return (f"the rate at which the window's own orders make the target, {f['window_fills_per_order']:.3f} fills "
                f"per order as replayed on a replica of the seeded books ({warmup}); ")
    if "warmup_orders" in f:
        return f"the rate from the warm-up's measured fills per order: the forecast was not used ({warmup}); "
    return "the rate from the warm-up's measured fills per order; "


# -- shared measures ---------------------------------------------------------------


def p99(ctx: Context, shard: str, start: float, end: float, note: str = "") -> Measurement:
    """One shard's pooled p99 over a window, with a bootstrap interval over the window's blocks (one per scrape):
    a latency near its bar is judged on where that interval lies, not on the point."""
    series = read_blocks(ctx.prom, f'shard="{shard}"', start, end)
    blocks = series.within(start, end) if series.cells is not None else []
    query = f"quantile 0.99 of {series.query}, pooled over the window"
    found = pooled_quantile(series.cells, [b.counts for b in blocks]) if blocks else None
    if found is None:
        return Measurement(None, query, f"no orders matched on shard {shard} in the window", window=(start, end))
    estimate, low, high = found
    pooled = sum(b.counts for b in blocks)
    n = int(pooled.sum())
    buckets = as_buckets(series.cells, pooled)
    if len(blocks) < MIN_BLOCKS_FOR_INTERVAL:
        low, high = buckets.interval(0.99)  # too few blocks to resample: the rank band of its orders
    detail = f"shard {shard}: p99 {render(estimate, LATENCY)}" + (f"; {note}" if note else "")
    evidence = {"kind": "quantile", "q": 0.99, "shard": shard, "buckets": buckets.to_dict()}
    return Measurement(estimate, query, detail, interval=(low, high), level=0.95, n=n, blocks=len(blocks),
                       window=(start, end),
                       evidence=evidence)


def error_rate(ctx: Context, exp: ExperimentRecord, shards: tuple[str, ...], via_gateway: bool) -> Measurement:
    """The larger of the client's, the remote-written and the server's non-200 ratios; fails if they disagree."""
    start, end = exp.start - SCRAPE_S, exp.end + 2 * SCRAPE_S
    sel = f'{run_matcher(ctx.run_id)},experiment="{exp.id}"'
    client_total = sum(p.load.scheduled for p in exp.phases)
    client_bad = sum(sum(p.load.errors.values()) + p.load.dropped for p in exp.phases)
    rw_total, q1 = remote_written(ctx.prom, f"loadgen_requests_total{{{sel}}}", start, end)
    rw_by_status, _ = remote_written(ctx.prom, f"loadgen_requests_total{{{sel}}}", start, end, by="status")
    shard_sel = "|".join(shards)
    if via_gateway:
        by_class, q3 = counter_delta(ctx.prom, f'gw_requests_total{{shard=~"{shard_sel}"}}', start, end, by="status")
        server_total = sum(by_class.values()) or None
        server_bad = sum(v for k, v in by_class.items() if k != "2xx")
        server_name = "gateway (gw_requests_total)"
    else:
        accepted, q3 = counter_delta(ctx.prom, f'me_orders_received_total{{shard=~"{shard_sel}"}}', start, end)
        server_total = float(client_total) or None
        server_bad = max(0.0, client_total - accepted[""]) if "" in accepted else None
        server_name = "shard (accepted orders vs scheduled)"
    client = client_bad / client_total if client_total else None
    server = server_bad / server_total if server_total and server_bad is not None else None
    remote_total = rw_total.get("")
    remote = sum(v for k, v in rw_by_status.items() if k != "200") / remote_total if remote_total else None
    sides = {"client": client, "remote-written": remote, server_name: server}
    known = {k: v for k, v in sides.items() if v is not None}
    query = f"{q1}; sum by (status) of the same; {q3}"
    detail = "; ".join(f"{k} {render(v, RATIO)}" for k, v in sides.items())
    detail += f" (client: {client_bad:,} of {client_total:,} scheduled failed or were dropped)"
    if (client is None and server is None) or remote is None:
        return Measurement(None, query, detail + "; a side had no requests (remote write or server counters missing)")
    spread = max(known.values()) - min(known.values())
    fails = (f"the sides disagree by {spread:.1%} (> 1 point): the evidence does not hold together"
             if spread > MAX_SIDES_DISAGREEMENT else "")
    return Measurement(max(known.values()), query, detail, n=client_total, fails=fails)


def queue(ctx: Context, shards: tuple[str, ...], start: float, end: float) -> Measurement:
    fill, query = queue_fill(ctx.prom, shards, start, end)
    return Measurement(fill, query, f"shards {', '.join(shards)}; fill sampled at each scrape", window=(start, end))


def depth(ctx: Context, shards: tuple[str, ...], start: float, end: float) -> Measurement:
    d = depth_excursion(ctx.prom, shards, start, end)
    return Measurement(d.factor, d.query, d.detail, window=(start, end))


def phase_p99(ctx: Context, exp: ExperimentRecord, shard: str, phase: str | None = None,
              excluded_note: bool = False) -> Measurement:
    """A shard's p99 over one phase's measured window (the first phase by default)."""
    ph = exp.phase(phase) if phase else exp.phases[0]
    start, end = measured_window(ph, ctx.profile)
    note = client_p99_note(ph) + (f"; first {start - ph.start:g} s excluded" if excluded_note else "")
    return p99(ctx, shard, start, end, note)


# -- ASR 1 -------------------------------------------------------------------------


def rise(ctx: Context, crit_id: str, exp: ExperimentRecord, design: CycleDesign,
         alpha: float | None = None) -> Measurement:
    """A comparison's p99 rise at a look (``alpha``: that look's error rate); without ``alpha``, the final
    measurement: at the last look's error rate, with the attribution (what else moved between the arms)."""
    crit = ctx.criterion(crit_id)
    log = exp.cycles
    if log is None:
        return Measurement(None, "no cycles", f"{exp.id} ran no cycles")
    final = alpha is None
    if alpha is None:
        alpha = log.looks[-1].level if log.looks else design.looks.levels()[-1]
    m = rise_measurement(ctx.prom, exp, log, log.shard, alpha, design, crit.comparison, crit.threshold)
    m = m.with_detail(f"{log.cycles} cycles ({log.design})" + (f"; {log.stopped}" if log.stopped else "")
                      + f"; {log.isolation}")
    if final:
        why = attribution(ctx.prom, exp, log)
        m = m.with_detail(why) if why else m
    return m


def scheduled_between(phase: PhaseRecord, start: float, end: float) -> int:
    """Requests the schedule sent in [start, end), by the second they were due."""
    return sum(s.scheduled for s in phase.load.timeline if start <= phase.start + s.second < end)


def outage_orders(ctx: Context, exp: ExperimentRecord) -> Measurement:
    """Orders matched in the outage arms' blocks over the orders due in them. A matcher that stalls on the
    broker completes them only after the outage, and its blocks hold fewer."""
    log = exp.cycles
    arms = log.phases(exp, True) if log else []
    if not arms:
        return Measurement(None, "no outage arms", "A4 ran no outage arm")
    series = read_blocks(ctx.prom, f'shard="{log.shard}"', arms[0].start - 10, arms[-1].end + 10)
    matched, sent = 0.0, 0
    for phase in arms:
        for b in series.within(phase.start + GUARD_S, phase.load_end + TAIL_S):
            matched += b.n
            sent += scheduled_between(phase, b.start, b.end)
    if series.cells is None or not sent:
        return Measurement(None, series.query, f"{sent} orders were due in the outage arms' blocks; shard "
                                               f"{log.shard}'s histogram has {len(series.blocks)} blocks")
    return Measurement(matched / sent, series.query, f"{matched:,.0f} orders matched in the outage arms' blocks, "
                       f"{sent:,} were due in them (all flows on shard {log.shard})", n=sent)


def events_lost(lost: Callable[[], tuple[int, int, int]]) -> Measurement:
    expected, found, duplicates = lost()
    return Measurement(float(max(0, expected - found)),
                       'me_matches_total{shard="a"} vs distinct matchIds "a-*" read back from topic `matches`',
                       f"{expected} matches counted, {found} distinct events on the topic, {duplicates} duplicates",
                       n=expected)


# -- ASR 2 -------------------------------------------------------------------------


def match_rate_windows(ctx: Context, start: float, end: float) -> tuple[list[tuple[float, float]], dict, str]:
    """The aggregate match rate per scrape over trailing windows of ``rate_window_s``, from each shard's raw
    counter deltas (no extrapolation): (points, per-shard (first, last) raw sample, query)."""
    window = ctx.profile.rate_window_s
    query = f"me_matches_total[{max(5, math.ceil(end - start))}s]"
    per_shard: dict[str, list[tuple[float, float]]] = {}
    for s in ctx.prom.query_matrix(query, at=end):
        pts = [(t, v) for t, v in s.points if start <= t <= end]
        if len(pts) >= 2:
            per_shard.setdefault(s.labels.get("shard", "?"), []).extend(pts)
    rates: dict[str, list[tuple[float, float]]] = {}
    for shard, pts in per_shard.items():
        pts.sort()
        out = []
        for j, (t, v) in enumerate(pts):
            back = [(t0, v0) for t0, v0 in pts[:j] if t - t0 >= window - 0.5]
            if back:
                t0, v0 = back[-1]
                out.append((t, (v - v0) * 60.0 / (t - t0)))
        rates[shard] = out
    if not rates or not all(rates.values()):
        return [], {}, query
    # On a 5 s grid: each shard's latest trailing rate at or before the grid time, summed over the shards.
    first = max(r[0][0] for r in rates.values())
    last = min(r[-1][0] for r in rates.values())
    points, t = [], first
    while t <= last + 1e-6:
        total = sum(max((p for p in r if p[0] <= t + 1e-6), key=lambda p: p[0])[1] for r in rates.values())
        points.append((t, total))
        t += SCRAPE_S
    spans = {shard: (pts[0][0], pts[-1][0]) for shard, pts in per_shard.items()}
    return points, spans, f"{query} @ {end:.0f} (raw samples: each shard's delta over trailing {window} s windows)"


def sustained_rate(ctx: Context, exp: ExperimentRecord) -> Measurement:
    """The open-loop window's longest stretch at or above the bar; a shortfall the system caused fails, one the
    flow caused (it offered less than the bar) cannot decide."""
    phase, p = exp.phases[0], ctx.profile
    start = phase.marks.get("measured", phase.start)
    points, _, query = match_rate_windows(ctx, start, phase.end + SCRAPE_S)
    if not points:
        return Measurement(None, query, "no shard has two raw samples in the window")
    s = sustained(points, reg.ASR2_BAR, SCRAPE_S)
    ok = s.longest_above_s >= p.sustain_s and s.longest_below_s <= p.max_gap_s
    offered = phase.extra.get("offered", {})
    detail = (f"open loop at {phase.order_rate:,.1f} orders/s from the start, the first {start - phase.start:.0f} s "
              f"excluded" + (f"; the replica of the seeded books forecast every window at {offered['minimum']:,.0f}"
                             f" matches/min or more ({offered['mean']:,.0f} on average): the bar plus "
                             f"{offered['sigmas']:g} sd of the windows over "
                             f"{offered.get('spread_over_s', phase.end - start):.0f} s of the flow (sd "
                             f"{offered['sd']:,.0f})" if offered else "")
              + f"; longest stretch >= {reg.ASR2_BAR:,.0f}/min: {s.longest_above_s:.0f} s (need {p.sustain_s:g} s); "
              f"longest below: {s.longest_below_s:.0f} s (allowed {p.max_gap_s:g} s); minimum {s.minimum:,.0f}/min, "
              f"mean {s.mean:,.0f}/min over {len(points)} windows")
    window = (start, phase.end)
    if ok:
        return Measurement(s.longest_above_s, query, detail, window=window)
    behind = fell_behind(ctx, phase, start)
    if behind:
        return Measurement(s.longest_above_s, query, detail, window=window, fails=f"the system fell behind: {behind}")
    return Measurement(s.longest_above_s, query, detail, window=window,
                       undecidable="the system kept up (no errors, no queue, latency under the bar), so the flow "
                                   "offered less than the bar: the experiment did not test it")


def fell_behind(ctx: Context, phase: PhaseRecord, start: float) -> str:
    """Evidence that the system, not the flow, caused a shortfall; empty when there is none."""
    reasons = []
    load = phase.load
    if load.error_ratio >= reg.MAX_ERROR_RATIO:
        reasons.append(f"{load.error_ratio:.1%} of requests failed or were dropped")
    if load.scheduled and load.sent < 0.95 * load.scheduled:
        reasons.append(f"only {load.sent:,} of {load.scheduled:,} scheduled requests left the client")
    fill, _ = queue_fill(ctx.prom, reg.SHARDS, start, phase.end + SCRAPE_S)
    if fill is not None and fill > reg.MAX_QUEUE_FILL:
        reasons.append(f"a matcher queue reached {fill:.1%}")
    if load.latency_ms.get("p99", 0.0) >= reg.P99_BAR_S * 1000:
        reasons.append(f"client p99 {load.latency_ms['p99']:.0f} ms")
    return "; ".join(reasons)


def replica_agreement(ctx: Context, exp: ExperimentRecord,
                      replica: Callable[[dict[str, tuple[float, float]]], dict[str, int] | None]) -> Measurement:
    """|the shards' matches - the replica's matches for the orders sent| / the replica's, per shard's own scrapes:
    a margin above the bar cannot hide a matcher that makes fewer fills than it should. The detail names the
    scrape intervals where the two parted most."""
    phase = exp.phases[0]
    start = phase.marks.get("measured", phase.start)
    end = phase.end + SCRAPE_S
    query = f"me_matches_total[{max(5, math.ceil(end - start))}s]"
    series = {s.labels.get("shard", "?"): [(t, v) for t, v in s.points if start <= t <= end]
              for s in ctx.prom.query_matrix(query, at=end)}
    series = {shard: pts for shard, pts in series.items() if len(pts) >= 2}
    text = f"{query} @ {end:.0f} (raw samples per shard)"
    if not series:
        return Measurement(None, text, "no shard has two raw samples in the window")
    spans = {shard: (pts[0][0], pts[-1][0]) for shard, pts in series.items()}
    expected = replica(spans)
    if expected is None:
        return Measurement(None, text, "no replica of this flow (a flow the harness did not seed, or load from "
                                       "elsewhere)")
    measured = sum(pts[-1][1] - pts[0][1] for pts in series.values())
    want = sum(expected.values())
    if want <= 0:
        return Measurement(None, text, "the replica forecast no fills for the orders sent")
    parted = []
    for shard, pts in series.items():
        for (t0, v0), (t1, v1) in pairwise(pts):
            made = (replica({shard: (t0, t1)}) or {}).get(shard, 0)
            parted.append((abs(v1 - v0 - made), shard, t0 - phase.start, v1 - v0, made))
    worst = sorted(parted, reverse=True)[:3]
    detail = (f"the shards made {measured:,.0f} matches between each one's first and last scrape of the window; a "
              f"replica of the seeded books, fed the orders the schedule sent in those intervals, made {want:,}; "
              "most apart: " + ", ".join(f"shard {sh} at +{t:.0f} s {got:,.0f} vs {made:,}"
                                          for _, sh, t, got, made in worst))
    if phase.load.dropped or sum(phase.load.errors.values()):
        detail += " (the load dropped or lost requests: their orders are counted as sent, so the replica runs ahead)"
    return Measurement(abs(measured - want) / want, text, detail, n=want)


def events_agree(ctx: Context, exp: ExperimentRecord, count_events) -> Measurement:
    phase = exp.phases[0]
    start = phase.marks.get("measured", phase.start)
    end = phase.end + SCRAPE_S
    raw = f"me_matches_total[{max(5, round(end - start))}s]"
    windows: dict[str, tuple[float, float]] = {}
    delta = 0.0
    for s in ctx.prom.query_matrix(raw, at=end):
        if len(s.points) >= 2:
            (t0, v0), (t1, v1) = s.points[0], s.points[-1]
            windows[s.labels.get("shard", "?")] = (t0, t1)
            delta += v1 - v0
    query = f"{raw} @ {end:.0f} (raw samples per shard)"
    if not windows:
        return Measurement(None, query, "no raw samples in the window")
    events = count_events(windows, round(delta))
    spans = ", ".join(f"{s} {t1 - t0:.0f} s" for s, (t0, t1) in sorted(windows.items()))
    return Measurement(abs(delta - events) / max(events, 1), query,
                       f"{delta:,.0f} matches counted by the shards between each one's first and last scrape in the "
                       f"window ({spans}), {events:,} distinct MATCH_EXECUTED events stamped in the same intervals",
                       window=(start, phase.end))


def hold_rate(ctx: Context, b3: ExperimentRecord) -> Measurement:
    hold = b3.phase("hold")
    start = hold.marks.get("measured", hold.start + ctx.profile.warmup_exclusion_s)
    increase, q = counter_increase(ctx.prom, "me_matches_total", start, hold.end)
    total = increase.get("")
    mpm = None if total is None else total * 60 / max(5, round(hold.end - start))
    return Measurement(mpm, q, client_p99_note(hold) + " (open loop after the hold's warm-up)",
                       window=(start, hold.end))


def hot_share(ctx: Context, b4: ExperimentRecord) -> Measurement:
    start, end = measured_window(b4.phases[0], ctx.profile)
    by_shard, q = counter_increase(ctx.prom, "me_orders_received_total", start, end, by="shard")
    total = sum(by_shard.values())
    if not total:
        return Measurement(None, q)
    shares = ", ".join(f"{k} {v / total:.1%}" for k, v in sorted(by_shard.items()))
    return Measurement(by_shard.get("a", 0.0) / total, q, f"accepted orders by shard: {shares}", window=(start, end))


def b_load(ctx: Context, exp: ExperimentRecord) -> Measurement:
    """Orders shard b accepted in the loaded arms over the orders its flow was planned to send there."""
    log = exp.cycles
    loaded, idle = (log.phases(exp, True), log.phases(exp, False)) if log else ([], [])
    planned = sum(round(p.load.scheduled * (1 - idle[0].order_rate / p.order_rate)) for p in loaded) if idle else 0
    got, query = 0.0, 'me_orders_received_total{shard="b"} over each loaded arm (last - first raw sample)'
    for phase in loaded:
        delta, _ = counter_delta(ctx.prom, 'me_orders_received_total{shard="b"}', phase.start - SCRAPE_S,
                                 phase.end + SCRAPE_S)
        got += delta.get("", 0.0)
    if not planned:
        return Measurement(None, query, "no orders were planned for shard b")
    return Measurement(got / planned, query, f"shard b accepted {got:,.0f} of {planned:,} planned orders in "
                                             f"{len(loaded)} loaded arms", n=planned)


def b_errors(ctx: Context, exp: ExperimentRecord) -> Measurement:
    log = exp.cycles
    loaded = log.phases(exp, True) if log else []
    bad = total = 0.0
    for phase in loaded:
        by_class, _ = counter_delta(ctx.prom, 'gw_requests_total{shard="b"}', phase.start - SCRAPE_S,
                                    phase.end + SCRAPE_S, by="status")
        total += sum(by_class.values())
        bad += sum(v for k, v in by_class.items() if k != "2xx")
    query = 'gw_requests_total{shard="b"} by status over each loaded arm (last - first raw sample)'
    if not total:
        return Measurement(None, query, "the gateway counted no requests for shard b")
    return Measurement(bad / total, query, f"{bad:,.0f} of {total:,.0f} of shard b's requests were not 2xx")


def memory_growth(ctx: Context, shard: str, start: float, end: float, bar: float) -> Measurement:
    """Resident memory growth first to last quarter, with an interval from the samples' scatter around their trend:
    it states the smallest growth the window would detect, and fails only with a significant upward trend too."""
    query = f'process_resident_memory_bytes{{app="matching-engine",shard="{shard}"}}'
    series = ctx.prom.query_range(query, start, end, SCRAPE_S)
    text = f"query_range {query} [{start:.0f}, {end:.0f}] step {SCRAPE_S:g}s"
    values = [v for _, v in series[0].points] if series else []
    if len(values) < 8:
        return Measurement(None, text, f"shard {shard}: {len(values)} samples, fewer than 8")
    q = max(2, len(values) // 4)
    first, last = sum(values[:q]) / q, sum(values[-q:]) / q
    growth = (last - first) / first if first > 0 else 0.0
    # Scatter around the straight line through the samples: what a quarter's mean can be off by.
    n = len(values)
    xs = range(n)
    mx, my = (n - 1) / 2, sum(values) / n
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, values)) / sum((x - mx) ** 2 for x in xs)
    resid = [y - (my + slope * (x - mx)) for x, y in zip(xs, values)]
    sd = (sum(r * r for r in resid) / max(n - 2, 1)) ** 0.5
    se = sd * math.sqrt(2 / q) / first if first > 0 else math.inf
    smallest = (Z_95 + 0.84) * se  # the growth a window like this detects 80 % of the time
    s, p_value = mann_kendall(values)
    detail = (f"RSS {values[0] / 2**20:.1f} -> {values[-1] / 2**20:.1f} MiB over {n} samples; Mann-Kendall trend "
              f"p={p_value:.3g}; the smallest growth this window would detect: {smallest:.1%}")
    low, high = growth - Z_95 * se, growth + Z_95 * se
    undecidable = ""
    if low > bar and not (s > 0 and p_value < 0.05):
        undecidable = "the growth lies beyond the bar but without a significant upward trend: a longer run would tell"
    elif high > bar >= low and smallest > bar:
        undecidable = (f"this window cannot detect a growth of {bar:.0%} (it detects {smallest:.1%}): a longer run "
                       f"would")
    return Measurement(growth, text, detail, interval=(low, high), level=0.95, n=n, window=(start, end),
                       undecidable=undecidable)
