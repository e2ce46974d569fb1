"""Reading a window's evidence from Prometheus: bucket vectors, quantiles, rises, depth, queue fill, errors.

Each reader returns numbers and the exact PromQL (with its evaluation time),
so a verdict can show what it was computed from. Quantiles are computed here
from the window's bucket vector (``histograms.Buckets``) rather than by
``histogram_quantile``: the same interpolation, plus the sample count and the
interval the criteria need.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from matchlab.observe.histograms import Buckets, Rise, quantile_rise, samples_needed
from matchlab.observe.promql import PromClient
from matchlab.observe.verdicts import COMPARE, LATENCY, Criterion, Status, Verdict, inconclusive, no_data, render

SCRAPE_S = 5.0
MATCH_HISTOGRAM = "me_match_duration_seconds"
SYNC_HISTOGRAM = "me_wal_sync_duration_seconds"


def _seconds(start: float, end: float) -> int:
    return max(5, round(end - start))


def buckets_query(shard: str, start: float, end: float, metric: str = MATCH_HISTOGRAM) -> str:
    return f'sum by (le) (increase({metric}_bucket{{shard="{shard}"}}[{_seconds(start, end)}s]))'


def window_buckets(prom: PromClient, shard: str, start: float, end: float,
                   metric: str = MATCH_HISTOGRAM) -> tuple[Buckets | None, str]:
    """One shard's bucket vector over [start, end] (None: no series at all)."""
    query = buckets_query(shard, start, end, metric)
    samples = prom.query(query, at=end)
    pairs = [(float(s.labels["le"]), s.value) for s in samples if "le" in s.labels and not math.isnan(s.value)]
    text = f"{query} @ {end:.0f}"
    try:
        return (Buckets.from_pairs(pairs) if pairs else None), text
    except ValueError:
        return None, text


def p99_over(prom: PromClient, shard: str, start: float, end: float, q: float = 0.99,
             metric: str = MATCH_HISTOGRAM) -> tuple[float | None, str]:
    """A quantile of one shard's histogram over [start, end]; None when the window holds no samples."""
    buckets, query = window_buckets(prom, shard, start, end, metric)
    value = buckets.quantile(q) if buckets is not None else None
    return value, f"quantile {q:g} of {query}"


def latency_verdict(prom: PromClient, criterion: Criterion, shard: str, start: float, end: float,
                    note: str = "") -> Verdict:
    """A p99-below-a-bar criterion; the detail gives n and the p99's own 95 % interval."""
    buckets, query = window_buckets(prom, shard, start, end)
    if buckets is None or buckets.n <= 0:
        return no_data(criterion, f"quantile 0.99 of {query}", f"no orders matched on shard {shard} in the window")
    p99 = buckets.quantile(0.99)
    lo, hi = buckets.interval(0.99)
    detail = (f"shard {shard}: p99 {render(p99, LATENCY)} over {buckets.n:,.0f} orders "
              f"(95 % interval {render(lo, LATENCY)}-{render(hi, LATENCY)})" + (f"; {note}" if note else ""))
    ok = COMPARE[criterion.comparison](p99, criterion.threshold)
    evidence = {"kind": "quantile", "q": 0.99, "shard": shard, "buckets": buckets.to_dict()}
    return Verdict(criterion, p99, Status.PASS if ok else Status.FAIL, f"quantile 0.99 of {query}", detail, (start, end),
                   evidence=evidence)


@dataclass(frozen=True)
class JournalChange:
    """How much an order's p99 could feel the journal's write + fsync changing between two windows."""

    slower_s: float  # it slowed beyond doubt: a rise of an order's p99 this large (seconds) it accounts for
    faster_s: float  # it sped up beyond doubt: a rise this large it could have hidden
    detail: str


def journal_change(prom: PromClient, shard: str, before: tuple[float, float],
                   during: tuple[float, float]) -> JournalChange:
    """The journal's write + fsync p99 between two windows (``me_wal_sync_duration_seconds``).

    Match latency includes the journal's fsync. That histogram times the
    syscalls alone, so a stalled event loop does not show in it, but it is
    wall time: a slow disk shows, and so does a thread that waits for a core
    (a producer spinning through a broker outage once raised it ~3x here).
    Only a change beyond doubt counts, either way, and it counts twice: an
    order may wait for the commit in progress, then for its own.
    """
    base, _ = window_buckets(prom, shard, *before, metric=SYNC_HISTOGRAM)
    other, _ = window_buckets(prom, shard, *during, metric=SYNC_HISTOGRAM)
    rise = quantile_rise(base, other) if base is not None and other is not None else None
    if rise is None:
        return JournalChange(0.0, 0.0, "the journal's write + fsync: no syncs timed in one of the windows")
    detail = (f"the journal's write + fsync p99 {render(rise.base, LATENCY)} -> {render(rise.other, LATENCY)} "
              f"({rise.point:+.0%}, 95 % interval {rise.low:+.0%} to {rise.high:+.0%})")
    change = 2 * (rise.other - rise.base)
    return JournalChange(change if rise.low > 0 else 0.0, -change if rise.high < 0 else 0.0, detail)


# A shard using this much more CPU per order in one window than in another spent it on something new.
CPU_PER_ORDER_RISE = 0.5


@dataclass(frozen=True)
class CpuChange:
    """The shard process's CPU per order received, from one window to another."""

    rose: bool  # by more than CPU_PER_ORDER_RISE, or not measured (nothing can then be excused by it)
    detail: str


def cpu_per_order_change(prom: PromClient, shard: str, before: tuple[float, float],
                         during: tuple[float, float]) -> CpuChange:
    """``process_cpu_seconds_total`` per ``me_orders_received_total`` in each window.

    What an outage costs a shard's own threads shows here (a producer spinning
    through a frozen broker took its CPU per order up ~7x), while a slow disk
    does not: a thread waiting in fsync uses none.
    """
    def per_order(window: tuple[float, float]) -> float | None:
        cpu = counter_increase(prom, f'process_cpu_seconds_total{{shard="{shard}"}}', *window)[0].get("")
        orders = counter_increase(prom, f'me_orders_received_total{{shard="{shard}"}}', *window)[0].get("")
        return cpu / orders if cpu is not None and orders else None

    a, b = per_order(before), per_order(during)
    if a is None or b is None or a <= 0:
        return CpuChange(True, f"shard {shard}'s CPU per order: no samples in one of the windows")
    rose = b > a * (1 + CPU_PER_ORDER_RISE)
    return CpuChange(rose, f"shard {shard}'s CPU per order {a * 1e6:,.0f} -> {b * 1e6:,.0f} µs"
                           + (" (up by more than half: a slower journal excuses nothing)" if rose else ""))


@dataclass(frozen=True)
class P99Shift:
    """One shard's p99 from a baseline window to another, judged against a largest allowed rise.

    PASS when the rise's 95 % interval lies wholly at or below the bar (the
    data could have seen a rise of that size, and did not), FAIL when it lies
    wholly above, INCONCLUSIVE when it straddles the bar (too few samples, or
    buckets too wide, to tell). The interval combines each window's rank band
    with the width of the buckets its ends fall in.
    """

    rise: Rise | None
    status: Status
    query: str
    detail: str
    evidence: dict | None = None  # both windows' bucket vectors, kept with the verdict

    @property
    def ok(self) -> bool:
        """Not shown to exceed the bar (the fault suite's reading: a significant rise fails)."""
        return self.status is not Status.FAIL

    def verdict(self, criterion: Criterion, window: tuple[float, float]) -> Verdict:
        if self.rise is None:
            return no_data(criterion, self.query, self.detail, window)
        if self.status is Status.INCONCLUSIVE:
            verdict = inconclusive(criterion, self.rise.point, self.query, self.detail, window, self.rise.half_width)
            return replace(verdict, evidence=self.evidence)
        return Verdict(criterion, self.rise.point, self.status, self.query, self.detail, window, self.rise.half_width,
                       self.evidence)


def p99_shift(prom: PromClient, shard: str, before: tuple[float, float], during: tuple[float, float],
              max_ratio: float, journal: JournalChange | None = None, excuse_slower: bool = False,
              two_sided: bool = False) -> P99Shift:
    """``journal``: how the journal's write + fsync changed between the windows.

    If it sped up, that could have hidden a rise: the p99 passes only if it
    holds the bar with that added back, else it is INCONCLUSIVE. If it
    slowed and ``excuse_slower`` says the cause lies outside what is judged
    (the VM's disk), the p99 fails only above the bar plus what that
    accounts for, and is INCONCLUSIVE between. A slower sync is also what a
    core taken from the shard looks like, so A4 excuses it only while the
    shard's CPU per order held (``cpu_per_order_change``).
    ``two_sided``: the p99 must not *change* by the bar either way ("changes
    < 5 %"); a fall beyond it is not a failure of the system but a disturbed
    baseline, so it leaves the verdict undecided. One-sided ("rises by at
    most 10 %"), a fall beyond the bar with the whole interval below it says
    the same: a baseline that slow cannot show a rise (a slow disk under the
    A4 baseline made the outage look 77-86 % faster, and passed).
    """
    base, base_q = window_buckets(prom, shard, *before)
    other, other_q = window_buckets(prom, shard, *during)
    query = f"{base_q}; {other_q}"
    rise = quantile_rise(base, other) if base is not None and other is not None else None
    if rise is None:
        n = f"{base.n if base else 0:,.0f} and {other.n if other else 0:,.0f}"
        return P99Shift(None, Status.FAIL, query, f"shard {shard}: no p99 in one of the windows ({n} orders)")
    bar = max_ratio
    slower = journal.slower_s if journal and excuse_slower else 0.0
    fail_bar = bar + slower / rise.base
    pass_bar = bar - (journal.faster_s / rise.base if journal else 0.0)
    low_ok = rise.low >= -bar if two_sided else rise.high >= -bar
    status = (Status.PASS if rise.high <= pass_bar and low_ok else Status.FAIL if rise.low > fail_bar
              else Status.INCONCLUSIVE)
    floor = max(base.bucket_width_at(0.99) or 0.0, other.bucket_width_at(0.99) or 0.0)
    detail = (
        f"shard {shard} p99 {render(rise.base, LATENCY)} over {rise.n_base:,.0f} orders, then {render(rise.other, LATENCY)} over "
        f"{rise.n_other:,.0f}: change {rise.point:+.1%}, 95 % interval {rise.low:+.1%} to {rise.high:+.1%} "
        f"(rank bands and bucket widths; the buckets alone are ~{floor:.1%} wide there); bar +{bar:.1%}"
    )
    if journal:
        detail += f"; {journal.detail}" + (
            f", which accounts for {render(slower, LATENCY)} of a rise (failing only above +{fail_bar:.1%})"
            if slower else
            f", which could have hidden {render(journal.faster_s, LATENCY)} of a rise (passing only below "
            f"{pass_bar:+.1%})" if journal.faster_s else "")
    if status is Status.INCONCLUSIVE and rise.low > bar:
        detail += ("; the p99 rose beyond the bar, but by no more than the journal's own slowdown accounts for: "
                   "this pair of windows cannot decide; a rerun would")
    elif status is Status.INCONCLUSIVE and rise.high <= bar and pass_bar < bar and low_ok:
        detail += ("; the p99 held the bar, but the journal's write + fsync sped up enough to hide a rise beyond "
                   "it: this pair of windows cannot decide; a rerun would")
    elif status is Status.INCONCLUSIVE and rise.high <= bar:
        detail += (f"; the p99 fell by more than {bar:.0%}: the baseline window was disturbed by something else "
                   "(another load on the machine, a slow disk?), so this pair of windows cannot decide the bar; "
                   "a rerun would")
    elif status is Status.INCONCLUSIVE:
        need = samples_needed(rise, max_ratio, floor)
        detail += ("; too little evidence to decide: " + (
            f"about {need:,.0f} orders per window would resolve +{max_ratio:.0%}" if need else
            "the buckets are too wide to resolve the bar at any sample count"))
    evidence = {"kind": "quantile_rise", "q": 0.99, "shard": shard, "base": base.to_dict(), "other": other.to_dict()}
    return P99Shift(rise, status, query, detail, evidence)


def counter_increase(prom: PromClient, selector: str, start: float, end: float,
                     by: str = "") -> tuple[dict[str, float], str]:
    """increase() of a counter over [start, end], summed (by a label if given)."""
    group = f" by ({by})" if by else ""
    query = f"sum{group} (increase({selector}[{_seconds(start, end)}s]))"
    samples = prom.query(query, at=end)
    return {s.labels.get(by, "") if by else "": s.value for s in samples if not math.isnan(s.value)}, f"{query} @ {end:.0f}"


def counter_delta(prom: PromClient, selector: str, start: float, end: float,
                  by: str = "") -> tuple[dict[str, float], str]:
    """A counter's growth between its first and last raw sample in [start, end], summed (by a label).

    For a window that holds a whole phase with quiet edges: increase()
    would extrapolate the phase's slope out to the window's edges and count
    requests that never came.
    """
    query = f"{selector}[{max(5, round(end - start))}s]"
    out: dict[str, float] = {}
    for s in prom.query_matrix(query, at=end):
        if len(s.points) >= 2:
            key = s.labels.get(by, "") if by else ""
            out[key] = out.get(key, 0.0) + s.points[-1][1] - s.points[0][1]
    return out, f"{query} @ {end:.0f} (last - first raw sample{', by ' + by if by else ''})"


def remote_written(prom: PromClient, selector: str, start: float, end: float, by: str = "") -> tuple[dict[str, float], str]:
    """Remote-written client counters over a window: each series' highest value, summed (by a label).

    The client's counters start at zero with each phase's exporter, so their
    highest value is the phase's count (increase() would need two pushes,
    and a short phase may make only one).
    """
    group = f" by ({by})" if by else ""
    query = f"sum{group} (max_over_time({selector}[{max(5, round(end - start))}s]))"
    samples = prom.query(query, at=end)
    return {s.labels.get(by, "") if by else "": s.value for s in samples}, f"{query} @ {end:.0f}"


def queue_fill(prom: PromClient, shards: Sequence[str], start: float, end: float) -> tuple[float | None, str]:
    """The highest matcher-queue fill any of the shards showed at a scrape in the window."""
    sel = "|".join(shards)
    query = f'max(max_over_time(me_ringbuffer_utilization_ratio{{shard=~"{sel}"}}[{_seconds(start, end)}s]))'
    return prom.scalar(query, at=end), f"{query} @ {end:.0f}"


@dataclass(frozen=True)
class DepthExcursion:
    factor: float | None  # worst max(start/min, max/start) over the sides; inf when a side emptied
    detail: str
    query: str


def depth_excursion(prom: PromClient, shards: Sequence[str], start: float, end: float) -> DepthExcursion:
    """How far each shard's bid and ask depth moved from where the window started, worst side first."""
    sel = "|".join(shards)
    query = f'sum by (shard, side) (me_orderbook_depth{{shard=~"{sel}"}})'
    series = prom.query_range(query, start, end, SCRAPE_S)
    text = f"query_range {query} [{start:.0f}, {end:.0f}] step {SCRAPE_S:g}s"
    found = {(s.labels.get("shard"), s.labels.get("side")) for s in series if s.points}
    wanted = {(sh, side) for sh in shards for side in ("bid", "ask")}
    if not series or not wanted <= found:
        missing = ", ".join(f"{sh} {side}" for sh, side in sorted(wanted - found))
        return DepthExcursion(None, f"no depth series for: {missing}", text)
    worst, notes = 0.0, []
    for s in sorted(series, key=lambda s: (s.labels.get("shard", ""), s.labels.get("side", ""))):
        values = [v for _, v in s.points]
        first, low, high = values[0], min(values), max(values)
        factor = math.inf if low <= 0 or first <= 0 else max(first / low, high / first)
        worst = max(worst, factor)
        notes.append(f"{s.labels.get('shard')} {s.labels.get('side')} {first:,.0f} -> min {low:,.0f} max {high:,.0f}")
    return DepthExcursion(worst, "; ".join(notes), text)
