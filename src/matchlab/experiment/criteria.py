"""docs/internals/design.md §6 criteria, evaluated from Prometheus over each experiment's own windows.

Every verdict keeps the exact PromQL it was computed from (with its
evaluation time), a detail line with the numbers behind it and, where the
data cannot decide, why and what would. Criteria come from the registry by
id; this module only measures and decides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from matchlab.experiment import registry as reg
from matchlab.experiment import scaling
from matchlab.experiment.evidence import (
    SCRAPE_S,
    counter_delta,
    counter_increase,
    cpu_per_order_change,
    depth_excursion,
    journal_change,
    latency_verdict,
    p99_over,
    p99_shift,
    queue_fill,
    remote_written,
)
from matchlab.experiment.profiles import ProfileSettings
from matchlab.experiment.record import ExperimentRecord, PhaseRecord
from matchlab.loadgen.run_label import run_matcher
from matchlab.observe.promql import PromClient
from matchlab.observe.usl import fit_usl
from matchlab.observe.verdicts import (
    LATENCY,
    Criterion,
    Status,
    Verdict,
    inconclusive,
    judge,
    monotonic_growth,
    no_data,
    render,
    sustained,
)

MAX_SIDES_DISAGREEMENT = 0.01  # client and server error ratios may differ by one percentage point


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


# -- shared criteria ---------------------------------------------------------------


def error_rate(ctx: Context, crit: Criterion, exp: ExperimentRecord, shards: tuple[str, ...], via_gateway: bool) -> Verdict:
    """The larger of the client's, the remote-written and the server's non-200 ratios; FAIL if they disagree."""
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
    remote = None
    if remote_total:
        remote = sum(v for k, v in rw_by_status.items() if k != "200") / remote_total
    sides = {"client": client, "remote-written": remote, server_name: server}
    known = {k: v for k, v in sides.items() if v is not None}
    query = f"{q1}; sum by (status) of the same; {q3}"
    detail = "; ".join(f"{k} {render(v, crit.unit)}" for k, v in sides.items())
    detail += f" (client: {client_bad:,} of {client_total:,} scheduled failed or were dropped)"
    if (client is None and server is None) or remote is None:
        return no_data(crit, query, detail + "; a side had no requests (remote write or server counters missing)")
    ratio = max(known.values())
    spread = max(known.values()) - min(known.values())
    if spread > MAX_SIDES_DISAGREEMENT:
        return Verdict(crit, ratio, Status.FAIL, query,
                       detail + f"; the sides disagree by {spread:.1%} (> 1 point): the evidence does not hold together")
    return judge(crit, ratio, query, detail)


def queue_verdict(ctx: Context, crit: Criterion, shards: tuple[str, ...], start: float, end: float) -> Verdict:
    fill, query = queue_fill(ctx.prom, shards, start, end)
    return judge(crit, fill, query, f"shards {', '.join(shards)}; fill sampled at each scrape", (start, end))


def depth_verdict(ctx: Context, crit: Criterion, shards: tuple[str, ...], start: float, end: float) -> Verdict:
    d = depth_excursion(ctx.prom, shards, start, end)
    if d.factor is None:
        return no_data(crit, d.query, d.detail, (start, end))
    return judge(crit, d.factor, d.query, d.detail, (start, end))


# -- ASR 1 -------------------------------------------------------------------------


def a2_verdicts(ctx: Context, exp: ExperimentRecord) -> list[Verdict]:
    phase = exp.phases[0]
    start, end = measured_window(phase, ctx.profile)
    note = client_p99_note(phase) + f"; first {ctx.profile.warmup_exclusion_s:g} s excluded"
    return [
        latency_verdict(ctx.prom, ctx.criterion("A2.p99"), "a", start, end, note),
        latency_verdict(ctx.prom, ctx.criterion("A2.p99_secondary"), "a", start, end, note),
        error_rate(ctx, ctx.criterion("A2.error_rate"), exp, ("a",), via_gateway=False),
        queue_verdict(ctx, ctx.criterion("A2.queue"), ("a",), start, end),
        depth_verdict(ctx, ctx.criterion("A2.depth"), ("a",), start, phase.end),
    ]


def a3_verdicts(ctx: Context, exp: ExperimentRecord) -> list[Verdict]:
    out = []
    for phase in exp.phases:
        start, end = measured_window(phase, ctx.profile)
        out.append(latency_verdict(ctx.prom, ctx.criterion(f"A3.p99.{phase.name}"), "a", start, end,
                                   client_p99_note(phase)))
    return out


def where_latency_went(ctx: Context, shard: str, before: tuple[float, float], during: tuple[float, float]) -> str:
    """The parts of match latency that tell a coupled matcher from a slow disk: publish and journal p99s."""
    parts = []
    for label, metric in (("handing events to the producer", "me_event_publish_duration_seconds"),
                          ("the journal's append-to-fsync", "me_wal_append_duration_seconds")):
        a, _ = p99_over(ctx.prom, shard, *before, metric=metric)
        b, _ = p99_over(ctx.prom, shard, *during, metric=metric)
        parts.append(f"{label} p99 {render(a, LATENCY)} -> {render(b, LATENCY)}")
    return "attribution: " + ", ".join(parts)


def scheduled_between(phase: PhaseRecord, start: float, end: float) -> int:
    """Requests the schedule sent in [start, end), by the second they were due."""
    rows = phase.load.timeline
    return sum(s.scheduled for s in rows if start <= phase.start + s.second < end)


def a4_verdicts(ctx: Context, exp: ExperimentRecord, lost_events: Callable[[], tuple[int, int, int]]) -> list[Verdict]:
    phase, p = exp.phases[0], ctx.profile
    base = (phase.start + p.warmup_exclusion_s, phase.start + p.a4_pause_at_s)
    outage = (base[1], base[1] + p.a4_pause_for_s)
    # A journal that sped up in the outage (a quieter disk, or cores the outage freed) could hide a rise; one
    # that slowed excuses a rise only while the shard's CPU per order held (a slow disk, not a core taken).
    cpu = cpu_per_order_change(ctx.prom, "a", base, outage)
    shift = p99_shift(ctx.prom, "a", base, outage, reg.DECOUPLING_RATIO, journal_change(ctx.prom, "a", base, outage),
                      excuse_slower=not cpu.rose)
    decoupling = shift.verdict(ctx.criterion("A4.decoupling"), (base[0], outage[1]))
    decoupling = replace(decoupling,
                         detail=f"{decoupling.detail}; {cpu.detail}; {where_latency_went(ctx, 'a', base, outage)}")

    expected, found, duplicates = lost_events()
    events = judge(ctx.criterion("A4.events_lost"), float(max(0, expected - found)),
                   'me_matches_total{shard="a"} vs distinct matchIds "a-*" read back from topic `matches`',
                   f"{expected} matches counted, {found} distinct events on the topic, {duplicates} duplicates")

    # Orders are attributed to the outage by when they were due (receipt), and counted as matched by the
    # shard's own histogram count over the same window: a matcher that stalls on the broker completes them
    # only after the outage, and the window holds fewer.
    sent = scheduled_between(phase, *outage)
    matched, query = counter_increase(ctx.prom, 'me_match_duration_seconds_count{shard="a"}', *outage)
    done = matched.get("")
    crit = ctx.criterion("A4.outage_orders")
    if not sent:
        orders = no_data(crit, query, "the schedule sent nothing during the outage")
    elif done is None:
        orders = no_data(crit, query, f"{sent} orders were due in the outage, shard a's count has no samples")
    else:
        orders = judge(crit, done / sent, query, f"{done:,.0f} orders matched during the outage, {sent:,} were due "
                       "(all flows on shard a)", outage)
    return [decoupling, events, orders]


# -- ASR 2 -------------------------------------------------------------------------


@dataclass(frozen=True)
class MatchEvidence:
    """The match count of a window from Prometheus' raw samples and from the events topic."""

    prometheus: float | None
    events: int | None
    windows: dict[str, tuple[float, float]]  # per shard: its first and last raw sample in the window
    query: str


def b2_verdicts(ctx: Context, b2: ExperimentRecord, count_events: Callable[[dict[str, tuple[float, float]], int], int]) -> list[Verdict]:
    phase, p = b2.phases[0], ctx.profile
    start, end = measured_window(phase, p)
    abc = reg.SHARDS
    out = [sustained_verdict(ctx, b2, phase, count_events)]
    out.append(_events_agree(ctx, ctx.criterion("B2.events_agree"), phase, count_events))
    for shard in abc:
        out.append(latency_verdict(ctx.prom, ctx.criterion(f"B2.p99.{shard}"), shard, start, end, client_p99_note(phase)))
    out.append(error_rate(ctx, ctx.criterion("B2.error_rate"), b2, abc, via_gateway=True))
    out.append(queue_verdict(ctx, ctx.criterion("B2.queue"), abc, start, end))
    out.append(depth_verdict(ctx, ctx.criterion("B2.depth"), abc, start, phase.end))
    return out


def match_rate_series(ctx: Context, start: float, end: float) -> tuple[list[tuple[float, float]], str]:
    rw = ctx.profile.rate_window_s
    query = f"sum(rate(me_matches_total[{rw}s])) * 60"
    # The first point's rate window must lie inside the open-loop window too.
    series = ctx.prom.query_range(query, start + rw, end, SCRAPE_S)
    return (series[0].points if series else []), f"query_range {query} [{start + rw:.0f}, {end:.0f}] step {SCRAPE_S:g}s"


def sustained_verdict(ctx: Context, exp: ExperimentRecord, phase: PhaseRecord,
                      count_events: Callable[[dict[str, tuple[float, float]], int], int]) -> Verdict:
    """The open-loop window's match rate against the bar; a shortfall is attributed from evidence."""
    crit, p = ctx.criterion("B2.sustained"), ctx.profile
    start = phase.marks.get("measured", phase.start)
    points, query = match_rate_series(ctx, start, phase.end)
    if not points:
        return no_data(crit, query)
    s = sustained(points, reg.ASR2_BAR, SCRAPE_S)
    ok = s.longest_above_s >= p.sustain_s and s.longest_below_s <= p.max_gap_s
    rate = phase.extra.get("fixed_order_rate")
    fixed = (f"open loop at {rate:,.1f} orders/s fixed after {start - phase.start:.0f} s of warm-up, "
             f"{forecast_note(phase)}" if phase.extra.get("steered", True) else f"open loop from the start{unsteered_note(phase)}; ")
    detail = (fixed if rate else "") + (
        f"longest stretch >= {reg.ASR2_BAR:,.0f}/min: {s.longest_above_s:.0f} s (need {p.sustain_s:g} s); longest "
        f"below: {s.longest_below_s:.0f} s (allowed {p.max_gap_s:g} s); minimum {s.minimum:,.0f}/min, "
        f"mean {s.mean:,.0f}/min over {len(points)} points")
    window = (start + p.rate_window_s, phase.end)
    if ok:
        return Verdict(crit, s.longest_above_s, Status.PASS, query, detail, window)
    behind = fell_behind(ctx, exp, phase, start)
    if behind:
        return Verdict(crit, s.longest_above_s, Status.FAIL, query, f"{detail}; the system fell behind: {behind}", window)
    return inconclusive(crit, s.longest_above_s, query, f"{detail}; the system kept up (no errors, no queue, latency "
                        f"under the bar): {flow_shortfall(ctx, phase, start)}", window)


def flow_shortfall(ctx: Context, phase: PhaseRecord, start: float) -> str:
    """Why a system that kept up still made fewer matches: the flow offered fewer (fills per order fell)."""
    end = phase.end + SCRAPE_S
    matches, _ = counter_increase(ctx.prom, "me_matches_total", start, end)
    orders, _ = counter_increase(ctx.prom, "me_orders_received_total", start, end)
    m, o = matches.get(""), orders.get("")
    rate = phase.extra.get("fixed_order_rate")
    why = "the experiment did not offer the match rate it is meant to test, so the data cannot decide"
    if not m or not o or not rate:
        return why
    fills = m / o
    d = depth_excursion(ctx.prom, reg.SHARDS, start, phase.end)
    book = ("the books moved " + f"{d.factor:.2f}x from their start" if d.factor is not None else "book depth unknown")
    return (f"at the fixed {rate:,.1f} orders/s the flow made {fills:.3f} fills per order ({book}), offering "
            f"{rate * fills * 60:,.0f} matches/min against the {reg.ASR2_BAR:,.0f} bar: {why}; a run whose flow "
            f"offers the bar would (fills per order drift with the book)")


def fell_behind(ctx: Context, exp: ExperimentRecord, phase: PhaseRecord, start: float) -> str:
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


def _events_agree(ctx: Context, crit: Criterion, phase: PhaseRecord, count_events) -> Verdict:
    start = phase.marks.get("measured", phase.start)
    ev = window_match_counts(ctx, start, phase.end + SCRAPE_S, count_events)
    if ev.prometheus is None or ev.events is None:
        return no_data(crit, ev.query, f"Prometheus {ev.prometheus}, events {ev.events}")
    diff = abs(ev.prometheus - ev.events) / max(ev.events, 1)
    spans = ", ".join(f"{s} {t1 - t0:.0f} s" for s, (t0, t1) in sorted(ev.windows.items()))
    return judge(crit, diff, ev.query,
                 f"{ev.prometheus:,.0f} matches counted by the shards between each one's first and last scrape in the "
                 f"window ({spans}), {ev.events:,} distinct MATCH_EXECUTED events stamped in the same intervals",
                 (start, phase.end))


def window_match_counts(ctx: Context, start: float, end: float, count_events) -> MatchEvidence:
    """Per shard: the counter's delta between its first and last raw sample in the window, and the
    events that shard stamped between those two scrapes."""
    raw = f"me_matches_total[{max(5, round(end - start))}s]"
    samples = ctx.prom.query_matrix(raw, at=end)
    windows: dict[str, tuple[float, float]] = {}
    delta = 0.0
    for s in samples:
        if len(s.points) < 2:
            continue
        (t0, v0), (t1, v1) = s.points[0], s.points[-1]
        windows[s.labels.get("shard", "?")] = (t0, t1)
        delta += v1 - v0
    if not windows:
        return MatchEvidence(None, None, {}, raw)
    return MatchEvidence(delta, count_events(windows, round(delta)), windows, f"{raw} @ {end:.0f} (raw samples per shard)")


def b3_verdicts(ctx: Context, b3: ExperimentRecord, b2_start: float) -> list[Verdict]:
    hold = b3.phase("hold")
    start = hold.marks.get("measured", hold.start + ctx.profile.warmup_exclusion_s)
    increase, q = counter_increase(ctx.prom, "me_matches_total", start, hold.end)
    total = increase.get("")
    mpm = None if total is None else total * 60 / max(5, round(hold.end - start))
    out = [judge(ctx.criterion("B3.hold"), mpm, q, client_p99_note(hold) + " (open loop after the hold's warm-up)",
                 (start, hold.end))]
    return out + memory_verdicts(ctx, b2_start, b3.end)


def b4_verdicts(ctx: Context, b4: ExperimentRecord) -> list[Verdict]:
    phase = b4.phases[0]
    start, end = measured_window(phase, ctx.profile)
    out = [latency_verdict(ctx.prom, ctx.criterion("B4.p99_hot"), "a", start, end, client_p99_note(phase))]
    by_shard, q = counter_increase(ctx.prom, "me_orders_received_total", start, end, by="shard")
    total = sum(by_shard.values())
    crit = ctx.criterion("B4.hot_share")
    if not total:
        out.append(no_data(crit, q))
    else:
        shares = ", ".join(f"{k} {v / total:.1%}" for k, v in sorted(by_shard.items()))
        out.append(judge(crit, by_shard.get("a", 0.0) / total, q, f"accepted orders by shard: {shares}", (start, end)))
    return out


def b5_verdicts(ctx: Context, exp: ExperimentRecord) -> list[Verdict]:
    idle, loaded = exp.phase("b-idle"), exp.phase("b-loaded")
    s1, _ = measured_window(idle, ctx.profile)
    s2, e2 = measured_window(loaded, ctx.profile)
    shift = p99_shift(ctx.prom, "a", (s1, idle.end), (s2, loaded.end), reg.ISOLATION_RATIO, two_sided=True)
    out = [shift.verdict(ctx.criterion("B5.isolation"), (s1, e2))]
    planned = loaded.extra.get("planned_orders", {}).get("b")
    delta, q = counter_delta(ctx.prom, 'me_orders_received_total{shard="b"}', loaded.start - SCRAPE_S, e2)
    got = delta.get("")
    crit = ctx.criterion("B5.b_load")
    if not planned or got is None:
        out.append(no_data(crit, q, f"planned {planned}"))
    else:
        out.append(judge(crit, got / planned, q, f"shard b accepted {got:,.0f} of {planned:,} planned orders"))
    by_class, q = counter_delta(ctx.prom, 'gw_requests_total{shard="b"}', loaded.start - SCRAPE_S, e2, by="status")
    total = sum(by_class.values())
    crit = ctx.criterion("B5.b_errors")
    if not total:
        out.append(no_data(crit, q, "the gateway counted no requests for shard b"))
    else:
        bad = sum(v for k, v in by_class.items() if k != "2xx")
        out.append(judge(crit, bad / total, q, f"{bad:,.0f} of {total:,.0f} of shard b's requests were not 2xx"))
    return out


def memory_verdicts(ctx: Context, start: float, end: float) -> list[Verdict]:
    """Growth first to last quarter against 5 %: above it, FAIL with a significant upward trend, else undecided."""
    query = 'process_resident_memory_bytes{app="matching-engine"}'
    series = {s.labels.get("shard", "?"): s for s in ctx.prom.query_range(query, start, end, SCRAPE_S)}
    out = []
    for shard in reg.SHARDS:
        crit = ctx.criterion(f"B3.memory.{shard}")
        s = series.get(shard)
        text = f"query_range {query} [{start:.0f}, {end:.0f}] step {SCRAPE_S:g}s"
        if s is None or len(s.points) < 4:
            out.append(no_data(crit, text, f"shard {shard}: fewer than 4 samples"))
            continue
        values = [v for _, v in s.points]
        grows, p, growth = monotonic_growth(values, min_growth=crit.threshold)
        detail = (f"Mann-Kendall trend p={p:.3g} over {len(values)} samples; RSS {values[0] / 2**20:.1f} -> "
                  f"{values[-1] / 2**20:.1f} MiB")
        if growth <= crit.threshold:
            out.append(Verdict(crit, growth, Status.PASS, text, detail, (start, end)))
        elif grows:
            out.append(Verdict(crit, growth, Status.FAIL, text, detail + "; a significant upward trend", (start, end)))
        else:
            out.append(inconclusive(crit, growth, text, detail + "; grew past 5 % without a significant trend "
                                    "(p >= 0.05): a longer run would tell growth from noise", (start, end)))
    return out


def scaling_verdicts(ctx: Context, exp: ExperimentRecord) -> list[Verdict]:
    return [scaling_verdict(ctx, exp)]


def scaling_verdict(ctx: Context, exp: ExperimentRecord) -> Verdict:
    """capacity(3) / (3 x capacity(1)) against 0.9, decided from the interval the searches allow.

    Each capacity's range runs from its lowest knee to its highest ceiling (the failing rate just
    above a knee) over the passes, so the interval covers both the search's bracket and how far the
    passes disagree; the verdict is PASS or FAIL only when the interval lies on one side of the bar.
    The USL fit explains; the bottleneck is named per N.
    """
    crit = ctx.criterion("S1.scaling")
    caps = {c["shards"]: c for c in exp.extra.get("capacities", [])}
    query = "capacity search through the gateway (client HdrHistograms, shards' /metrics, /proc CPU)"
    lines = [f"N={n}: {_knee(c)}; at the knee: {c['bottleneck']}" for n, c in sorted(caps.items())]
    detail = f"budgets: {exp.extra.get('budgets', 'none')}; " + " | ".join(lines)
    one, three = caps.get(1, {}).get("knee"), caps.get(3, {}).get("knee")
    ratio = three / (3 * one) if one and three else None
    if not exp.extra.get("enforced"):
        return inconclusive(crit, ratio, query,
                            f"CPU budgets were not enforced ({exp.extra.get('not_enforced', 'unknown')}): every "
                            f"configuration had the whole machine, so this measured the machine, not sharding; {detail}")
    if ratio is None or any(c.get("exhausted") for c in caps.values()):
        return inconclusive(crit, None, query, f"a capacity is missing or the search ran out of steps: {detail}")
    low, high = scaling.ratio_interval(caps[1]["bounds"], caps[3]["bounds"], 3)
    passes = min(len(caps[n].get("passes", [])) for n in scaling.RATIO_SHARDS)  # N=2 may have one
    detail = (f"ratio {ratio:.3f}, interval [{low:.3f}, {high:.3f}] from {passes} pass{'es' * (passes != 1)} and "
              f"the search's {exp.extra.get('knee_precision', scaling.KNEE_PRECISION):.1%} bracket; {detail}")
    try:
        detail += "; " + fit_usl([(n, c["knee"]) for n, c in caps.items() if c["knee"]]).describe()
    except ValueError as exc:
        detail += f"; no USL fit: {exc}"
    foreign = [(n, k, p) for n in scaling.RATIO_SHARDS for k, p in enumerate(caps[n].get("passes", []), 1) if p.get("foreign_limit")]
    if foreign:
        n, k, p = foreign[0]
        return inconclusive(crit, ratio, query, f"{p['foreign_limit']} ran out before the system under test did at "
                            f"N={n} (pass {k}: {p['bottleneck']}), so that knee measured {p['foreign_limit']}, not "
                            f"the shards; {detail}")
    decided = [judge(crit, bound, query) for bound in (low, high)]
    if decided[0].status is not decided[1].status:
        return inconclusive(crit, ratio, query,
                            f"the interval straddles {crit.threshold:g}: these capacities cannot decide (steadier "
                            f"capacities would: a quiet machine, --profile full's longer steps); {detail}",
                            resolving_power=(high - low) / 2)
    return replace(judge(crit, ratio, query, detail), status=decided[0].status, resolving_power=(high - low) / 2)


def _knee(cap: dict) -> str:
    if cap["knee"] is None:
        return "no knee (even the first step failed)"
    knees = [p["knee"] for p in cap.get("passes", [])]
    if len(knees) < 2:
        return f"{cap['knee']:,.0f} orders/s"
    return f"{cap['knee']:,.0f} orders/s (passes: {', '.join(f'{k:,.0f}' for k in knees)})"
