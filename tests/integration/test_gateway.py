"""The edge gateway in front of three real shard processes (docs/internals/design.md §3.6)."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from matchlab.loadgen.targets import SHARD_SYMBOLS
from matchlab.promtext import counter_total, scrape

pytestmark = pytest.mark.integration


def order(oid: str, symbol: str, side: str = "BUY", price: int = 14_000) -> dict:
    return {"orderId": oid, "symbol": symbol, "side": side, "type": "LIMIT", "price": price, "quantity": 5}


@pytest.fixture
def cluster(shard_factory, gateway_factory):
    shards = {s: shard_factory(s) for s in "abc"}
    gateway = gateway_factory({s: h.url for s, h in shards.items()})
    return shards, gateway


def test_every_symbol_lands_on_its_own_shard(cluster):
    shards, gateway = cluster
    with gateway.client() as c:
        for shard, symbols in SHARD_SYMBOLS.items():
            for symbol in symbols:
                r = c.post("/orders", json=order(f"r-{symbol}", symbol))
                assert r.status_code == 200, r.text
                assert r.json()["shardId"] == shard, symbol
    for shard, handle in shards.items():
        assert counter_total(scrape(handle.metrics_url), "me_orders_received", side="BUY") == 4
        for symbol in SHARD_SYMBOLS[shard]:
            book = httpx.get(f"{handle.url}/book/{symbol}").json()
            assert book["bids"] == [[14_000, [[f"r-{symbol}", 5]]]]


def test_replies_pass_through_and_errors_name_their_cause(cluster):
    shards, gateway = cluster
    with gateway.client() as c:
        assert c.get("/health").json() == {"status": "UP", "component": "edge-gateway"}
        r = c.post("/orders", json={**order("bad", "TEST-ASSET-E"), "quantity": 0})
        assert r.status_code == 400 and "quantity" in r.json()["reason"]  # the shard's own rejection
        r = c.post("/orders", json=order("u1", "TEST-ASSET-Z"))
        assert r.status_code == 400 and "unknown symbol" in r.json()["reason"]
        r = c.post("/orders", content=b"{nope", headers={"content-type": "application/json"})
        assert r.status_code == 400 and "cannot route" in r.json()["reason"]
        r = c.post("/seed/z", json={"orders": []})
        assert r.status_code == 404 and "unknown shard" in r.json()["reason"]
        seed = [order(f"s{i}", "TEST-ASSET-I", "SELL", 15_001 + i) for i in range(3)]
        assert c.post("/seed/c", json={"orders": seed}).json() == {"seeded": 3}
        r = c.post("/orders", json=order("x1", "TEST-ASSET-I", "BUY", 15_001))
        assert r.status_code == 200 and r.json()["shardId"] == "c"
    book = httpx.get(f"{shards['c'].url}/book/TEST-ASSET-I").json()
    assert [lvl[0] for lvl in book["asks"]] == [15_002, 15_003]


def test_a_dead_shard_gets_502_and_the_others_still_answer(cluster):
    shards, gateway = cluster
    shards["b"].process.stop()
    with gateway.client() as c:
        r = c.post("/orders", json=order("d1", "TEST-ASSET-F"))
        assert r.status_code == 502 and "'b' unreachable" in r.json()["reason"]
        for symbol in ("TEST-ASSET-A", "TEST-ASSET-L"):
            assert c.post("/orders", json=order(f"d-{symbol}", symbol)).status_code == 200
    text = scrape(gateway.metrics_url)
    assert counter_total(text, "gw_routing_errors", reason="shard_unavailable") == 1
    assert counter_total(text, "gw_requests", shard="b", status="5xx") == 1


def test_a_stalled_shard_gets_504_without_delaying_the_others(cluster):
    shards, gateway = cluster
    shards["c"].process.suspend()
    stalled: dict = {}

    def call_stalled() -> None:
        t0 = time.monotonic()
        r = httpx.post(f"{gateway.url}/orders", json=order("st1", "TEST-ASSET-J"), timeout=15)
        stalled.update(status=r.status_code, reason=r.json()["reason"], seconds=time.monotonic() - t0)

    worker = threading.Thread(target=call_stalled)
    worker.start()
    try:
        with gateway.client() as c:
            for i in range(20):  # while c hangs, a and b answer promptly
                t0 = time.monotonic()
                assert c.post("/orders", json=order(f"ok{i}", "TEST-ASSET-B" if i % 2 else "TEST-ASSET-G")).status_code == 200
                assert time.monotonic() - t0 < 1.0
        worker.join(15)
    finally:
        shards["c"].process.resume()
    assert stalled["status"] == 504 and "did not answer" in stalled["reason"]
    assert 4.5 <= stalled["seconds"] < 8
    assert counter_total(scrape(gateway.metrics_url), "gw_routing_errors", reason="timeout") == 1


def test_metrics_names_and_labels(cluster):
    _, gateway = cluster
    with gateway.client() as c:
        c.post("/orders", json=order("m1", "TEST-ASSET-A"))
        c.post("/orders", json=order("m2", "TEST-ASSET-Q"))
    text = scrape(gateway.metrics_url)
    assert counter_total(text, "gw_requests", shard="a", status="2xx") == 1
    assert counter_total(text, "gw_requests", shard="none", status="4xx") == 1
    assert counter_total(text, "gw_routing_errors", reason="unknown_symbol") == 1
    for reason in ("unknown_symbol", "shard_unavailable", "timeout"):
        assert f'gw_routing_errors_total{{reason="{reason}"}}' in text
    for bound in ("0.001", "0.005", "0.01", "0.025", "0.05", "0.1", "0.2", "0.5", "1.0"):
        assert f'gw_request_duration_seconds_bucket{{le="{bound}",shard="a"}}' in text


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SHARD_SYMBOLS_MAP": "a=X:Y,b=Y"}, "symbol 'Y' is on two shards"),
        ({"SHARD_SYMBOLS_MAP": "a=X,d=Z"}, "shards ['d'] own symbols"),
        ({"ME_SHARD_MAP": "a=http://h:1,b"}, "entry 'b' is not SHARD=VALUE"),
        ({"ME_SHARD_MAP": "a=ftp://h:1"}, "invalid URL"),
        ({"ME_SHARD_MAP": "a=http://h:1,a=http://h:2"}, "appears twice"),
    ],
)
def test_invalid_maps_refuse_to_start(gateway_factory, env, message):
    gateway = gateway_factory({"a": "http://127.0.0.1:1"}, start=False, **{"SHARD_SYMBOLS_MAP": "a=X", **env})
    gateway.process.start()
    assert gateway.process._proc.wait(10) == 2
    tail = gateway.process.log_tail()
    assert message in tail and "Traceback" not in tail


def test_sigterm_exits_cleanly(cluster):
    _, gateway = cluster
    assert gateway.process.stop() == 0
    assert "edge gateway stopped" in gateway.process.log_tail()
