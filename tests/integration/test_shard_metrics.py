"""The /metrics page carries every name, label and bucket bound of docs/internals/design.md §3.5."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.integration

REQUIRED_BUCKETS = {
    "me_match_duration_seconds": (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0),
    "me_order_validation_duration_seconds": (0.0001, 0.0005, 0.001, 0.005, 0.01),
    "me_orderbook_insertion_duration_seconds": (0.0001, 0.0005, 0.001, 0.005, 0.01),
    "me_matching_algorithm_duration_seconds": (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05),
    "me_wal_append_duration_seconds": (0.001, 0.005, 0.01, 0.025, 0.05, 0.1),
    "me_event_publish_duration_seconds": (0.0001, 0.0005, 0.001, 0.005, 0.01),
}
COUNTERS = {"me_matches": {"shard"}, "me_orders_received": {"shard", "side"}, "me_event_publish_errors": {"shard"}}
GAUGES = {
    "me_orderbook_depth": {"shard", "side"},
    "me_orderbook_price_levels": {"shard", "side"},
    "me_ringbuffer_utilization_ratio": {"shard"},
}


def scrape(url: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(httpx.get(url, timeout=5).text)}


def test_every_metric_with_labels_and_buckets(shard_factory):
    shard = shard_factory("b")
    order = {"orderId": "x", "symbol": "TEST-ASSET-E", "side": "SELL", "type": "LIMIT", "price": 15001, "quantity": 3}
    with shard.client() as c:
        assert c.post("/orders", json=order).status_code == 200
        assert c.post("/orders", json={**order, "orderId": "y", "side": "BUY"}).status_code == 200
    families = scrape(shard.metrics_url)

    for name, bounds in REQUIRED_BUCKETS.items():
        fam = families[name]
        assert fam.type == "histogram"
        les = {float(s.labels["le"]) for s in fam.samples if s.name.endswith("_bucket")}
        assert set(bounds) <= les, f"{name} lacks bounds {set(bounds) - les}"
        assert all(s.labels.get("shard") == "b" for s in fam.samples)
    for name, labels in COUNTERS.items():
        fam = families[name]
        assert fam.type == "counter"
        assert {k for s in fam.samples for k in s.labels} == labels
    for name, labels in GAUGES.items():
        fam = families[name]
        assert fam.type == "gauge" and {k for s in fam.samples for k in s.labels} == labels

    def value(name: str, **labels) -> float:
        return next(
            s.value
            for s in families[name].samples
            if s.name in (name, name + "_total") and all(s.labels.get(k) == v for k, v in labels.items())
        )

    assert value("me_matches", shard="b") == 1
    assert value("me_orders_received", shard="b", side="BUY") == 1
    assert value("me_orders_received", shard="b", side="SELL") == 1
    assert value("me_orderbook_depth", shard="b", side="ask") == 0
    assert value("me_orderbook_depth", shard="b", side="bid") == 0
    assert 0.0 <= value("me_ringbuffer_utilization_ratio", shard="b") <= 1.0
    assert any(n.startswith("process_") for n in families) and any(n.startswith("python_gc") for n in families)
