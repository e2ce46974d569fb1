"""Smoke checks of the whole stack (docs/internals/design.md §7), stronger than the anchor's shell script.

Runs on the multi topology (shards a, b, c + gateway, broker, Prometheus):
every integration point is exercised for real, and numbers are read back
through Prometheus after a scrape, not only from /metrics.
"""

from __future__ import annotations

import math
import time

import httpx
import pytest

from matchlab.errors import WaitTimeoutError
from matchlab.loadgen.flow import OrderFlow
from matchlab.loadgen.profile import LoadProfile
from matchlab.loadgen.remote_write import RemoteWriteExporter
from matchlab.loadgen.runner import run_load
from matchlab.loadgen.seeding import seed_books
from matchlab.loadgen.targets import SHARD_SYMBOLS, direct_targets, flow_source
from matchlab.observe.events import read_topic
from matchlab.observe.panels import PANELS
from matchlab.stack.stack import Stack
from matchlab.waiting import wait_until

pytestmark = pytest.mark.smoke

SCRAPE_WAIT_S = 30.0  # a few 5 s scrape + rule-evaluation cycles
SHARD_METRICS = (
    "me_match_duration_seconds_bucket",
    "me_order_validation_duration_seconds_bucket",
    "me_orderbook_insertion_duration_seconds_bucket",
    "me_matching_algorithm_duration_seconds_bucket",
    "me_wal_append_duration_seconds_bucket",
    "me_event_publish_duration_seconds_bucket",
    "me_matches_total",
    "me_orders_received_total",
    "me_event_publish_errors_total",
    "me_orderbook_depth",
    "me_orderbook_price_levels",
    "me_ringbuffer_utilization_ratio",
)
GATEWAY_METRICS = ("gw_requests_total", "gw_request_duration_seconds_bucket", "gw_routing_errors_total")


def order(oid: str, symbol: str, side: str, price: int, qty: int = 5) -> dict:
    return {"orderId": oid, "symbol": symbol, "side": side, "type": "LIMIT", "price": price, "quantity": qty}


def test_every_service_is_healthy(multi_stack: Stack):
    ep = multi_stack.endpoints
    for shard, url in ep.shards.items():
        assert httpx.get(f"{url}/health").json() == {"status": "UP", "shardId": shard}
    assert httpx.get(f"{ep.gateway}/health").json() == {"status": "UP", "component": "edge-gateway"}
    assert httpx.get(f"{ep.prometheus}/-/ready").status_code == 200


def test_an_order_is_accepted(multi_stack: Stack):
    r = httpx.post(f"{multi_stack.endpoints.shards['a']}/orders", json=order("smoke-1", "TEST-ASSET-B", "BUY", 100))
    assert r.status_code == 200 and r.json()["status"] == "ACCEPTED" and r.json()["shardId"] == "a"


def test_a_seed_is_accepted(multi_stack: Stack):
    ep = multi_stack.endpoints
    seeded = seed_books({"b": ep.shards["b"]}, SHARD_SYMBOLS, 20, 4, token=ep.admin_token)
    assert seeded == {"b": 80}


def test_a_crossing_pair_makes_one_match_seen_by_prometheus_and_the_broker(multi_stack: Stack):
    ep, prom = multi_stack.endpoints, multi_stack.prometheus()
    multi_stack.reset_shard("a")
    query = 'sum(me_matches_total{shard="a"})'
    before = prom.wait_for(query, SCRAPE_WAIT_S)[0].value
    tag = f"smoke-{time.time_ns()}"
    shard_a = ep.shards["a"]
    seed = {"orders": [order(f"{tag}-s", "TEST-ASSET-A", "SELL", 15_100)]}
    assert httpx.post(f"{shard_a}/seed", json=seed, headers=ep.admin_headers).status_code == 200
    assert httpx.post(f"{shard_a}/orders", json=order(f"{tag}-b", "TEST-ASSET-A", "BUY", 15_100)).status_code == 200

    # Prometheus sees exactly one more fill, and it stays at one.
    prom.wait_for(f"{query} >= {before + 1}", SCRAPE_WAIT_S, what="me_matches_total{shard='a'} to rise in Prometheus")
    time.sleep(6)  # one more scrape: nothing else may arrive
    assert prom.scalar(query) == before + 1

    events = read_topic(ep.broker, "matches", want=1, keep=lambda e: e.get("takerOrderId") == f"{tag}-b")
    assert len(events) == 1
    e = events[0]
    assert (e["type"], e["makerOrderId"], e["symbol"], e["executionPrice"], e["executionQuantity"]) == (
        "MATCH_EXECUTED", f"{tag}-s", "TEST-ASSET-A", 15_100, 5,
    )


def test_gateway_routes_one_symbol_per_shard(multi_stack: Stack):
    gw = multi_stack.endpoints.gateway
    for shard, symbol in (("a", "TEST-ASSET-C"), ("b", "TEST-ASSET-G"), ("c", "TEST-ASSET-K")):
        r = httpx.post(f"{gw}/orders", json=order(f"route-{symbol}", symbol, "BUY", 90))
        assert r.status_code == 200 and r.json()["shardId"] == shard, r.text


def test_every_target_is_up_in_prometheus(multi_stack: Stack):
    prom = multi_stack.prometheus()
    expected = {("matching-engine", s) for s in multi_stack.topology.shards} | {("edge-gateway", None)}

    def all_up() -> bool:
        return expected <= {(s.labels.get("job"), s.labels.get("shard")) for s in prom.query("up == 1")}

    try:
        wait_until(all_up, SCRAPE_WAIT_S, what="every shard and the gateway to be up in Prometheus", interval=1)
    except WaitTimeoutError:
        states = {(s.labels.get("job"), s.labels.get("shard")): s.value for s in prom.query("up")}
        pytest.fail(f"targets not up after {SCRAPE_WAIT_S:g}s: {states}", pytrace=False)


def test_every_design_metric_is_in_prometheus(multi_stack: Stack):
    prom = multi_stack.prometheus()
    prom.wait_for("up", SCRAPE_WAIT_S)
    for name in SHARD_METRICS:
        shards = {s.labels["shard"] for s in prom.wait_for(f"count by (shard) ({name})", SCRAPE_WAIT_S)}
        assert shards == set(multi_stack.topology.shards), name
    for name in GATEWAY_METRICS:
        assert prom.wait_for(f"count({name})", SCRAPE_WAIT_S), name
    assert prom.wait_for('count(process_resident_memory_bytes{app="matching-engine"})', SCRAPE_WAIT_S)


def test_recording_rule_returns_data(multi_stack: Stack):
    ep = multi_stack.endpoints
    seed_books({"c": ep.shards["c"]}, SHARD_SYMBOLS, 40, 8, token=ep.admin_token)
    source = flow_source(OrderFlow(SHARD_SYMBOLS["c"], seed=9), direct_targets({"c": ep.shards["c"]}))
    exporter = RemoteWriteExporter(ep.remote_write, {"run": "smoke"})
    result = run_load(LoadProfile.constant(20, 12), source, exporter=exporter)  # across several scrapes
    assert result.ok == result.scheduled and exporter.pushes >= 1
    rows = multi_stack.prometheus().wait_for('me:match_duration_p99:30s{shard="c"}', SCRAPE_WAIT_S)
    assert 0 < rows[0].value < 1.0


def test_every_dashboard_query_returns_data(multi_stack: Stack):
    """Each panel expression of the dashboard parses and returns data from the live Prometheus.

    Recording rules run every 5 s, so a rule over the load just sent may need a
    few evaluations before it has output: each expression is polled, not read once.
    """
    prom = multi_stack.prometheus()

    def has_data(expr: str) -> bool:
        end = time.time()
        series = prom.query_range(expr, end - 90, end, 5)  # a parse error raises QueryError
        return any(not math.isnan(v) for s in series for _, v in s.points)

    for panel in PANELS:
        for target in panel.targets:
            try:
                wait_until(lambda e=target.expr: has_data(e), SCRAPE_WAIT_S, what=target.expr, interval=1)
            except WaitTimeoutError:
                pytest.fail(f"panel {panel.id} ({panel.title}): {target.expr} returned no data", pytrace=False)


def test_grafana_is_healthy(multi_stack: Stack):
    url = multi_stack.endpoints.grafana
    if url is None:
        pytest.skip("Grafana absent: no `grafana` or `grafana-server` binary on PATH (prerequisite)")
    body = httpx.get(f"{url}/api/health").json()
    assert body.get("database") == "ok"
