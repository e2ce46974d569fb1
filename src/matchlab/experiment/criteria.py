"""DESIGN.md §6 criteria, evaluated from Prometheus over each experiment's own window.

Every verdict keeps the exact PromQL it was computed from (with its
evaluation time) and, where there is one, the client-side cross-check.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from matchlab.experiment.profiles import ProfileSettings
from matchlab.experiment.record import ExperimentRecord, PhaseRecord
from matchlab.loadgen.run_label import run_matcher
from matchlab.observe.promql import PromClient
from matchlab.observe.verdicts import (
    QUANTILE_Z,
    Criterion,
    Role,
    Verdict,
    judge,
    monotonic_growth,
    quantile_band,
    relative_change_ok,
    smallest_detectable_rise,
    sustained,
)

ASR1, ASR2 = "ASR 1", "ASR 2"
P99_BAR_S = 0.2
P99_SECONDARY_S = 0.05
MAX_ERROR_RATIO = 0.01
ASR2_BAR = 4750.0
SCALING_FACTOR = 0.9
DECOUPLING_RATIO = 0.10
ISOLATION_RATIO = 0.05
# Histogram buckets sit a fraction of a millisecond apart: differences below
# this are measurement resolution, not a change in latency.
LATENCY_RESOLUTION_S = 0.0005
SCRAPE_S = 5.0


MATCH_HISTOGRAM = "me_match_duration_seconds"
WAL_HISTOGRAM = "me_wal_append_duration_seconds"


def p99_query(shard: str, seconds: float, q: float = 0.99, metric: str = MATCH_HISTOGRAM) -> str:
    return (
        f'histogram_quantile({q:.4g}, sum by (le) (increase({metric}_bucket{{shard="{shard}"}}'
        f"[{max(5, round(seconds))}s])))"
    )


def p99_over(prom: PromClient, shard: str, start: float, end: float, q: float = 0.99,
             metric: str = MATCH_HISTOGRAM) -> tuple[float | None, str]:
    """Server-side p99 (or another quantile) of one shard's histogram over [start, end] (match latency by default)."""
    query = p99_query(shard, end - start, q, metric)
    return prom.scalar(query, at=end), f"{query} @ {end:.0f}"


def journal_p99_rise(prom: PromClient, shard: str, before: tuple[float, float], during: tuple[float, float]) -> float:
    """How much the journal's own fsync tail (append -> durable) rose between two windows, in seconds.

    Match latency includes waiting for the journal's fsync, and on a shared
    VM the disk's tail moves by milliseconds on its own. It is measured by the
    committer thread, so a stalled matcher or event loop does not show in it.
    """
    base, _ = p99_over(prom, shard, *before, metric=WAL_HISTOGRAM)
    other, _ = p99_over(prom, shard, *during, metric=WAL_HISTOGRAM)
    return max(0.0, other - base) if base is not None and other is not None else 0.0


def matched_orders(prom: PromClient, shard: str, start: float, end: float) -> float:
    query = f'sum(increase(me_match_duration_seconds_count{{shard="{shard}"}}[{max(5, round(end - start))}s]))'
    return prom.scalar(query, at=end) or 0.0


@dataclass(frozen=True)
class P99Shift:
    """How far one shard's p99 rose from a baseline window to another window, beyond sampling error.

    Two p99s from a few thousand samples each differ by chance by far more
    than 10 %: each is decided by its few dozen slowest orders. So the rise is
    measured from the upper end of the baseline's band to the lower end of the
    other window's band (``quantile_band``); a real coupling (a matcher that
    waits on the broker) moves the whole tail and still shows.
    """

    base: float | None
    other: float | None
    rise: float | None
    ok: bool
    query: str
    detail: str

    def verdict(self, criterion: Criterion, window: tuple[float, float]) -> Verdict:
        if self.rise is None:
            return judge(criterion, None, self.query, self.detail)
        return Verdict(criterion, self.rise, self.ok, self.query, self.detail, window)


def p99_shift(prom: PromClient, shard: str, before: tuple[float, float], during: tuple[float, float],
              max_ratio: float, allowance_s: float = 0.0, allowance_why: str = "") -> P99Shift:
    """``allowance_s`` widens the absolute tolerance by a rise already explained elsewhere (say why)."""
    n_base, n_other = matched_orders(prom, shard, *before), matched_orders(prom, shard, *during)
    base, base_q = p99_over(prom, shard, *before)
    other, other_q = p99_over(prom, shard, *during)
    q_hi = quantile_band(0.99, n_base)[1]
    q_lo = quantile_band(0.99, n_other)[0]
    base_hi, _ = p99_over(prom, shard, *before, q=q_hi)
    other_lo, _ = p99_over(prom, shard, *during, q=q_lo)
    tolerance = LATENCY_RESOLUTION_S + allowance_s
    rise, ok = relative_change_ok(base_hi, other_lo, max_ratio, tolerance)
    detectable = smallest_detectable_rise(base, base_hi, other, other_lo, max_ratio, tolerance)
    detail = (
        f"shard {shard} p99 {_ms(base)} over {n_base:.0f} orders, then {_ms(other)} over {n_other:.0f}; "
        f"sampling bands ({QUANTILE_Z:g} standard errors of the rank): p{q_lo * 100:.2f} {_ms(other_lo)} "
        f"vs the baseline's p{q_hi * 100:.2f} {_ms(base_hi)}; passes within +{max_ratio:.0%} "
        f"or {LATENCY_RESOLUTION_S * 1000:g} ms (histogram resolution)"
    )
    if allowance_s:
        detail += f" + {allowance_s * 1000:.2f} ms ({allowance_why})"
    if detectable is not None:
        detail += f"; resolving power: with these samples only a p99 rise above ~{detectable:.0%} would show"
    return P99Shift(base, other, rise, ok, f"{base_q}; {other_q}", detail)


def matches_per_minute(prom: PromClient, shards: list[str], start: float, end: float) -> tuple[float | None, str]:
    seconds = max(5, round(end - start))
    sel = "|".join(shards)
    query = f'sum(increase(me_matches_total{{shard=~"{sel}"}}[{seconds}s])) * 60 / {seconds}'
    return prom.scalar(query, at=end), f"{query} @ {end:.0f}"


def measured_window(phase: PhaseRecord, profile: ProfileSettings) -> tuple[float, float]:
    """The phase minus its warm-up, extended to the scrape after the load stopped."""
    return phase.start + profile.warmup_exclusion_s, phase.end + SCRAPE_S


def error_rate(prom: PromClient, run_id: str, exp: ExperimentRecord, criterion: Criterion) -> Verdict:
    """Errors and dropped requests over all requests, from the client's remote-written counters."""
    sel = f'{run_matcher(run_id)},experiment="{exp.id}"'
    seconds = round(exp.end - exp.start + 2 * SCRAPE_S)
    at = exp.end + SCRAPE_S
    total_q = f"sum(max_over_time(loadgen_requests_total{{{sel}}}[{seconds}s]))"
    bad_q = f'sum(max_over_time(loadgen_requests_total{{{sel},status!="200"}}[{seconds}s]))'
    total = prom.scalar(total_q, at=at)
    bad = prom.scalar(bad_q, at=at) or 0.0  # no non-200 series at all means no errors
    client_total = sum(p.load.scheduled for p in exp.phases)
    client_bad = sum(sum(p.load.errors.values()) + p.load.dropped for p in exp.phases)
    detail = f"client-side: {client_bad} of {client_total} scheduled requests failed or were dropped"
    if total is not None and abs(total - client_total) > 0.01 * client_total:
        detail += f"; Prometheus saw {total:.0f} requests (client {client_total}): remote write incomplete"
    ratio = None if not total else bad / total
    return judge(criterion, ratio, f"({bad_q}) / ({total_q}) @ {at:.0f}", detail)


def client_p99_note(phase: PhaseRecord) -> str:
    lat = phase.load.latency_ms
    return f"client-side (from scheduled send): p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms over {lat['count']} requests"


# -- ASR 1 -------------------------------------------------------------------------


def a2_verdicts(prom: PromClient, run_id: str, exp: ExperimentRecord, profile: ProfileSettings) -> list[Verdict]:
    phase = exp.phases[0]
    start, end = measured_window(phase, profile)
    p99, query = p99_over(prom, "a", start, end)
    window = (start, end)
    note = client_p99_note(phase) + f"; first {profile.warmup_exclusion_s:g} s excluded"
    return [
        judge(Criterion(ASR1, "A2", "p99 match latency (shard a)", Role.PRIMARY, "<", P99_BAR_S, "s"), p99, query, note, window),
        judge(Criterion(ASR1, "A2", "p99 match latency, secondary bar", Role.SECONDARY, "<", P99_SECONDARY_S, "s"),
              p99, query, note, window),
        error_rate(prom, run_id, exp, Criterion(ASR1, "A2", "error rate", Role.ERROR_RATE, "<", MAX_ERROR_RATIO)),
    ]


def a3_verdicts(prom: PromClient, exp: ExperimentRecord, profile: ProfileSettings) -> list[Verdict]:
    out = []
    for phase in exp.phases:
        start, end = measured_window(phase, profile)
        p99, query = p99_over(prom, "a", start, end)
        c = Criterion(ASR1, "A3", f"p99 match latency at depth {phase.name}", Role.SECONDARY, "<", P99_BAR_S, "s")
        out.append(judge(c, p99, query, client_p99_note(phase), (start, end)))
    return out


def a4_verdicts(
    prom: PromClient, exp: ExperimentRecord, profile: ProfileSettings, lost_events: Callable[[], tuple[int, int, int]]
) -> list[Verdict]:
    phase = exp.phases[0]
    base_start, pause = phase.start + profile.warmup_exclusion_s, phase.start + profile.a4_pause_at_s
    resume = pause + profile.a4_pause_for_s
    c = Criterion(ASR1, "A4", "p99 during broker outage vs baseline (relative rise beyond sampling error)",
                  Role.DECOUPLING, "<=", DECOUPLING_RATIO)
    decoupling = p99_shift(prom, "a", (base_start, pause), (pause, resume), DECOUPLING_RATIO).verdict(
        c, (base_start, resume))
    expected, found, duplicates = lost_events()
    lost = max(0, expected - found)
    events = judge(
        Criterion(ASR1, "A4", "MATCH_EXECUTED events lost across the outage", Role.DECOUPLING, "==", 0),
        float(lost),
        'me_matches_total{shard="a"} vs distinct matchIds "a-*" read back from topic `matches`',
        f"{expected} matches counted, {found} distinct events on the topic, {duplicates} duplicates",
    )
    return [decoupling, events]


# -- ASR 2 -------------------------------------------------------------------------


def throughput_1(prom: PromClient, b1: ExperimentRecord, profile: ProfileSettings) -> tuple[float | None, str]:
    phase = b1.phases[0]
    return matches_per_minute(prom, ["a"], phase.start + profile.warmup_exclusion_s, phase.end)


def b2_verdicts(
    prom: PromClient, run_id: str, b2: ExperimentRecord, b1: ExperimentRecord | None, profile: ProfileSettings
) -> list[Verdict]:
    phase = b2.phases[0]
    start, end = phase.start + profile.warmup_exclusion_s, phase.end  # the rate series stops with the load
    rw = profile.rate_window_s
    series_q = f"sum(rate(me_matches_total[{rw}s])) * 60"
    series = prom.query_range(series_q, start + rw, end, SCRAPE_S)
    points = series[0].points if series else []
    out: list[Verdict] = []
    primary = Criterion(ASR2, "B2", f"aggregate >= {ASR2_BAR:,.0f} matches/min sustained (longest stretch)",
                        Role.PRIMARY, ">=", profile.sustain_s, "s")
    if not points:
        out.append(judge(primary, None, f"query_range {series_q} [{start + rw:.0f}, {end:.0f}] step {SCRAPE_S:g}s"))
    else:
        s = sustained(points, ASR2_BAR, SCRAPE_S)
        ok = s.longest_above_s >= profile.sustain_s and s.longest_below_s <= profile.max_gap_s
        detail = (
            f"longest stretch >= {ASR2_BAR:,.0f}: {s.longest_above_s:.0f} s (need {profile.sustain_s:g} s); "
            f"longest below: {s.longest_below_s:.0f} s (allowed {profile.max_gap_s:g} s); minimum {s.minimum:,.0f}/min; "
            f"mean {sum(v for _, v in points) / len(points):,.0f}/min"
        )
        out.append(Verdict(primary, s.longest_above_s, ok, f"query_range {series_q} step {SCRAPE_S:g}s", detail,
                           (start + rw, end)))
    thr3, thr3_q = matches_per_minute(prom, ["a", "b", "c"], start, end)
    if b1 is not None:
        thr1, thr1_q = throughput_1(prom, b1, profile)
        ratio = None if not thr1 or thr3 is None else thr3 / (3 * thr1)
        out.append(judge(
            Criterion(ASR2, "B2", "linear scaling: throughput(3) / (3 x throughput(1))", Role.SCALING, ">=", SCALING_FACTOR),
            ratio, f"throughput(3): {thr3_q}; throughput(1) (B1): {thr1_q}",
            f"throughput(1) {_num(thr1)}/min on shard a alone, throughput(3) {_num(thr3)}/min",
        ))
    for shard in ("a", "b", "c"):
        p99, q = p99_over(prom, shard, start, end + SCRAPE_S)
        out.append(judge(Criterion(ASR2, "B2", f"p99 match latency at peak, shard {shard}", Role.PEAK_LATENCY, "<",
                                   P99_BAR_S, "s"), p99, q, client_p99_note(phase)))
    out.append(error_rate(prom, run_id, b2, Criterion(ASR2, "B2", "error rate", Role.ERROR_RATE, "<", MAX_ERROR_RATIO)))
    return out


def b3_verdicts(prom: PromClient, b3: ExperimentRecord, profile: ProfileSettings) -> list[Verdict]:
    hold = b3.phase("hold")
    mpm, q = matches_per_minute(prom, ["a", "b", "c"], hold.start + profile.warmup_exclusion_s, hold.end)
    return [judge(Criterion(ASR2, "B3", "matches/min during the 5,000/min hold after the ramp", Role.SECONDARY,
                            ">=", ASR2_BAR), mpm, q, client_p99_note(hold))]


def b4_verdicts(prom: PromClient, b4: ExperimentRecord, profile: ProfileSettings) -> list[Verdict]:
    phase = b4.phases[0]
    start, end = measured_window(phase, profile)
    p99, q = p99_over(prom, "a", start, end)
    return [judge(Criterion(ASR2, "B4", "p99 match latency of the hot shard a (80 % of orders)", Role.SECONDARY, "<",
                            P99_BAR_S, "s"), p99, q, client_p99_note(phase))]


def isolation_verdicts(prom: PromClient, exp: ExperimentRecord, profile: ProfileSettings) -> list[Verdict]:
    idle, loaded = exp.phase("b-idle"), exp.phase("b-loaded")
    s1, _ = measured_window(idle, profile)
    s2, e2 = measured_window(loaded, profile)
    c = Criterion(ASR2, "B5", "shard a p99 change when shard b's load rises (beyond sampling error)", Role.ISOLATION,
                  "<", ISOLATION_RATIO)
    return [p99_shift(prom, "a", (s1, idle.end), (s2, loaded.end), ISOLATION_RATIO).verdict(c, (s1, e2))]


def memory_verdicts(prom: PromClient, start: float, end: float) -> list[Verdict]:
    query = 'process_resident_memory_bytes{app="matching-engine"}'
    series = {s.labels.get("shard", "?"): s for s in prom.query_range(query, start, end, SCRAPE_S)}
    out = []
    for shard in ("a", "b", "c"):
        c = Criterion(ASR2, "B2-B3", f"no monotonic memory growth, shard {shard} (relative growth)", Role.MEMORY,
                      "<=", 0.05)
        s = series.get(shard)
        if s is None or len(s.points) < 4:
            out.append(judge(c, None, f"query_range {query} [{start:.0f}, {end:.0f}]"))
            continue
        values = [v for _, v in s.points]
        grows, p, growth = monotonic_growth(values)
        detail = (f"Mann-Kendall trend p={p:.3g} over {len(values)} samples; RSS {values[0] / 2**20:.1f} -> "
                  f"{values[-1] / 2**20:.1f} MiB; fails only for a significant upward trend larger than 5 %")
        out.append(Verdict(c, growth, not grows, f"query_range {query} step {SCRAPE_S:g}s", detail, (start, end)))
    return out


def _ms(v: float | None) -> str:
    return "no data" if v is None or math.isnan(v) else f"{v * 1000:.2f} ms"


def _num(v: float | None) -> str:
    return "no data" if v is None else f"{v:,.0f}"
