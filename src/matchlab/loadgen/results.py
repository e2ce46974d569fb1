"""Client-side measurements: HdrHistograms overall and per target, a per-second timeline.

Latency is recorded in microseconds from each request's *scheduled* send time,
so queueing anywhere (client, network, server) counts (no coordinated
omission). The finished run is a plain ``LoadResult`` (JSON-ready): the report
renders it without touching live objects.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field

from hdrh.histogram import HdrHistogram

LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS = 1, 120_000_000, 3
TIMELINE_DIGITS = 2  # per-second histograms only need p50/p99
PERCENTILES = (50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99)


def new_histogram(digits: int = SIGNIFICANT_DIGITS) -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, digits)


def encode_histogram(hist: HdrHistogram) -> str:
    """The standard compressed HdrHistogram encoding, as text (``decode_histogram`` reads it back)."""
    return hist.encode().decode("ascii")


def decode_histogram(encoded: str) -> HdrHistogram:
    return HdrHistogram.decode(encoded.encode("ascii"))


def summarize(hist: HdrHistogram) -> dict[str, float]:
    """Percentiles in milliseconds (empty histogram: zeros with count 0)."""
    out = {f"p{p:g}": hist.get_value_at_percentile(p) / 1000.0 for p in PERCENTILES}
    out["max"] = hist.get_max_value() / 1000.0
    out["mean"] = hist.get_mean_value() / 1000.0
    out["count"] = hist.get_total_count()
    return out


@dataclass
class SecondStats:
    second: int
    scheduled: int = 0
    sent: int = 0
    ok: int = 0
    dropped: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    histogram: str = ""  # this second's latencies, encoded: a window's histogram is the sum of its seconds'


@dataclass
class LoadResult:
    """Everything a run measured, as plain data."""

    target_rate: float  # mean requests/s the profile asked for
    duration_s: float
    scheduled: int
    sent: int
    ok: int
    dropped: int
    errors: dict[str, int]
    achieved_rate: float  # sent / duration
    latency_ms: dict[str, float]
    latency_by_target_ms: dict[str, dict[str, float]]
    schedule_error_ms: dict[str, float]
    timeline: list[SecondStats]
    cpu_seconds: float = 0.0
    cpu_us_per_request: float = 0.0
    extra: dict = field(default_factory=dict)
    histogram: str = ""  # every latency recorded, encoded (``decode_histogram``): what a comparison of runs reads

    @property
    def error_ratio(self) -> float:
        failed = sum(self.errors.values()) + self.dropped
        return failed / self.scheduled if self.scheduled else 0.0

    def to_dict(self) -> dict:
        doc = asdict(self)
        doc["error_ratio"] = self.error_ratio
        return doc

    def summary_line(self) -> str:
        lat = self.latency_ms
        return (
            f"target {self.target_rate:,.1f}/s achieved {self.achieved_rate:,.1f}/s | sent {self.sent:,} ok {self.ok:,} "
            f"errors {sum(self.errors.values()):,} dropped {self.dropped:,} | latency ms p50 {lat['p50']:.2f} "
            f"p99 {lat['p99']:.2f} max {lat['max']:.2f} | sched err p99 {self.schedule_error_ms['p99']:.3f} ms"
        )


class Recorder:
    """Accumulates one run's measurements; cheap enough to call per request."""

    def __init__(self) -> None:
        self.overall = new_histogram()
        self.by_target: dict[str, HdrHistogram] = defaultdict(new_histogram)
        self.schedule_error = new_histogram()
        self.statuses: Counter[str] = Counter()
        self.scheduled = self.sent = self.ok = self.dropped = 0
        self._seconds: dict[int, SecondStats] = {}
        self._second_hists: dict[int, HdrHistogram] = {}
        self.listeners: list = []  # callables(latency_us or None if dropped, status, target): remote write

    def _second(self, s: int) -> SecondStats:
        stats = self._seconds.get(s)
        if stats is None:
            stats = self._seconds[s] = SecondStats(s)
            self._second_hists[s] = new_histogram(TIMELINE_DIGITS)
        return stats

    def on_scheduled(self, second: int) -> None:
        self.scheduled += 1
        self._second(second).scheduled += 1

    def on_dropped(self, second: int) -> None:
        self.dropped += 1
        self._second(second).dropped += 1
        for listener in self.listeners:
            listener(None, "dropped", "")

    def on_sent(self, second: int, lag_us: int) -> None:
        self.sent += 1
        self._second(second).sent += 1
        self.schedule_error.record_value(max(LOWEST_US, min(lag_us, HIGHEST_US)))

    def on_done(self, second: int, target: str, status: str, latency_us: int) -> None:
        latency_us = max(LOWEST_US, min(latency_us, HIGHEST_US))
        stats = self._second(second)
        if status == "200":
            self.ok += 1
            stats.ok += 1
        else:
            self.statuses[status] += 1
            stats.errors[status] = stats.errors.get(status, 0) + 1
        # Errors count in latency too: a slow 503 is still a slow answer.
        self.overall.record_value(latency_us)
        self.by_target[target].record_value(latency_us)
        self._second_hists[second].record_value(latency_us)
        for listener in self.listeners:
            listener(latency_us, status, target)

    def result(self, target_rate: float, duration_s: float, cpu_seconds: float = 0.0) -> LoadResult:
        timeline = []
        for s in sorted(self._seconds):
            stats, hist = self._seconds[s], self._second_hists[s]
            if hist.get_total_count():
                stats.p50_ms = hist.get_value_at_percentile(50) / 1000.0
                stats.p99_ms = hist.get_value_at_percentile(99) / 1000.0
                stats.histogram = encode_histogram(hist)
            timeline.append(stats)
        return LoadResult(
            target_rate=target_rate,
            duration_s=duration_s,
            scheduled=self.scheduled,
            sent=self.sent,
            ok=self.ok,
            dropped=self.dropped,
            errors=dict(self.statuses),
            achieved_rate=self.sent / duration_s if duration_s else 0.0,
            latency_ms=summarize(self.overall),
            latency_by_target_ms={t: summarize(h) for t, h in sorted(self.by_target.items())},
            schedule_error_ms=summarize(self.schedule_error),
            timeline=timeline,
            cpu_seconds=cpu_seconds,
            cpu_us_per_request=cpu_seconds / self.sent * 1e6 if self.sent else 0.0,
            histogram=encode_histogram(self.overall) if self.overall.get_total_count() else "",
        )
