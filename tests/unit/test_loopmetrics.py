"""The loop's lock-free metrics expose exactly what prometheus_client's own would (bar ``_created``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from matchlab.loopmetrics import LoopCounter, LoopHistogram

BOUNDS = (0.00001, 0.0005, 0.001, 0.0025, 0.1, 1.0)
VALUES = [0.000001, 0.00001, 0.0004, 0.0005, 0.0007, 0.001, 0.09, 0.5, 1.0, 7.0]


def exposition(registry: CollectorRegistry) -> list[str]:
    return [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]


def test_histogram_and_counter_match_prometheus_client_line_for_line():
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    h_ours = LoopHistogram("x_seconds", "doc", ["shard"], ours, BOUNDS)
    h_theirs = Histogram("x_seconds", "doc", ["shard"], registry=theirs, buckets=BOUNDS)
    c_ours = LoopCounter("y_total", "doc", ["shard", "side"], ours)
    c_theirs = Counter("y_total", "doc", ["shard", "side"], registry=theirs)
    for shard in ("a", "b"):
        for v in VALUES:
            h_ours.labels(shard=shard).observe(v)
            h_theirs.labels(shard=shard).observe(v)
        c_ours.labels(shard=shard, side="BUY").inc(3)
        c_theirs.labels(shard=shard, side="BUY").inc(3)
    c_ours.labels(shard="a", side="SELL")  # bound, never incremented: exported at zero
    c_theirs.labels(shard="a", side="SELL")
    assert exposition(ours) == exposition(theirs)
