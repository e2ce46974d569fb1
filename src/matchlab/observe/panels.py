"""The dashboard's six panels, defined once (docs/internals/design.md §4).

The Grafana dashboard JSON is generated from these definitions
(``python -m matchlab.observe.dashboard``), and the HTML report renders the
very same queries with matplotlib, so what a user sees live and what the
report shows afterwards cannot drift apart. Queries use the recording rules
wherever one exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str  # Grafana legend format, e.g. "{{shard}} p99"


@dataclass(frozen=True)
class Threshold:
    value: float
    color: str  # "red" / "yellow" / "green"
    label: str


@dataclass(frozen=True)
class Panel:
    id: int
    title: str
    unit: str  # Grafana unit: "s", "short", "percentunit", "bytes", "reqps"
    targets: tuple[Target, ...]
    thresholds: tuple[Threshold, ...] = ()
    grid: dict = field(default_factory=dict)
    description: str = ""


def _grid(index: int) -> dict:
    """Two columns of width 12, rows at y = 0, 8, 16."""
    return {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)}


PANELS: tuple[Panel, ...] = (
    Panel(
        1,
        "Match latency p50 / p95 / p99 per shard",
        "s",
        (
            Target("me:match_duration_p50:30s", "{{shard}} p50"),
            Target("me:match_duration_p95:30s", "{{shard}} p95"),
            Target("me:match_duration_p99:30s", "{{shard}} p99"),
        ),
        (Threshold(0.2, "red", "ASR 1: 200 ms"), Threshold(0.05, "yellow", "secondary: 50 ms")),
        _grid(0),
        "HTTP receipt to match result, server side (me_match_duration_seconds).",
    ),
    Panel(
        2,
        "Matches per minute, per shard and aggregate",
        "short",
        (
            Target("me:matches_per_minute:30s", "shard {{shard}}"),
            Target("me:matches_per_minute_total:30s", "aggregate"),
        ),
        (Threshold(1000, "yellow", "ASR 1 load: 1,000/min"), Threshold(5000, "red", "ASR 2 target: 5,000/min")),
        _grid(1),
    ),
    Panel(
        3,
        "Latency budget breakdown (average per order)",
        "s",
        (
            Target("me:validation_duration_avg:30s", "{{shard}} validation"),
            Target("me:orderbook_insertion_duration_avg:30s", "{{shard}} orderbook insertion"),
            Target("me:matching_algorithm_duration_avg:30s", "{{shard}} matching algorithm"),
            Target("me:wal_append_duration_avg:30s", "{{shard}} WAL append (to fsync)"),
            Target("me:event_publish_duration_avg:30s", "{{shard}} event publish"),
        ),
        (),
        _grid(2),
    ),
    Panel(
        4,
        "Saturation: ring buffer, book depth, memory",
        "short",
        (
            Target("max by (shard) (me_ringbuffer_utilization_ratio) * 100", "{{shard}} ring buffer %"),
            Target("sum by (shard) (me_orderbook_depth)", "{{shard}} resting orders"),
            Target('max by (shard) (process_resident_memory_bytes{app="matching-engine"}) / 1048576', "{{shard}} RSS MiB"),
            Target('sum by (shard) (rate(python_gc_collections_total{app="matching-engine"}[30s]))', "{{shard}} GC/s"),
        ),
        (),
        _grid(3),
    ),
    Panel(
        5,
        "Load generator request rate",
        "reqps",
        (Target("me:loadgen_requests_per_second:30s", "status {{status}}"),),
        (),
        _grid(4),
        "Pushed by the load generator through Prometheus' remote-write receiver.",
    ),
    Panel(
        6,
        "Load generator end-to-end latency p99",
        "s",
        (Target("me:loadgen_latency_p99:30s", "client p99"),),
        (Threshold(0.2, "red", "200 ms"),),
        _grid(5),
        "Measured from each request's scheduled send time (open model).",
    ),
)
