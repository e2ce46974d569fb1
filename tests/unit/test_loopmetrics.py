"""The loop's lock-free metrics expose exactly what prometheus_client's own would (bar ``_created``), and write
the same text themselves for a cheap scrape."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from matchlab.exposition import ScrapeRegistry
from matchlab.exposition import exposition as scrape_text
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


def test_a_scrape_registry_writes_the_same_text_as_generate_latest():
    """Label values that need escaping, counts past a million (written in Go's exponent form), a counter that
    never moved, collectors that do not write their own text, and one unregistered again."""
    registry = ScrapeRegistry()
    hist = LoopHistogram("x_seconds", "doc with a \\ and\na newline", ["shard"], registry, BOUNDS)
    counter = LoopCounter("y_total", "doc", ["shard", "side"], registry)
    Gauge("z_depth", "a prometheus_client gauge", ["shard"], registry=registry).labels(shard="a").set(7)
    gone = LoopCounter("w_total", "unregistered below", ["shard"], registry)
    gone.labels(shard="a").inc()
    for v in VALUES:
        hist.labels(shard='a"\\\nb').observe(v)
    hist.labels(shard="big").counts[0] = 1_234_567
    counter.labels(shard="a", side="BUY").inc(2_500_000)
    counter.labels(shard="a", side="SELL")
    registry.unregister(gone)
    cheap = scrape_text(registry).decode().splitlines()
    assert cheap and "w_total" not in "".join(cheap)
    assert sorted(cheap) == sorted(generate_latest(registry).decode().splitlines())
    assert 'x_seconds_bucket{le="1e-05",shard="big"} 1.234567e+06' in cheap


def test_a_scrape_registry_refuses_a_duplicate_name_and_keeps_what_it_had():
    registry = ScrapeRegistry()
    LoopCounter("y_total", "doc", ["shard"], registry).labels(shard="a").inc()
    before = scrape_text(registry)
    with pytest.raises(ValueError, match="Duplicated"):
        LoopCounter("y_total", "again", ["shard"], registry)
    assert scrape_text(registry) == before
