"""The shard's HTTP contract against a real shard process (docs/internals/design.md §3.1)."""

from __future__ import annotations

import asyncio

import aiohttp
import httpx
import pytest

pytestmark = pytest.mark.integration

SYM = "TEST-ASSET-A"
GOOD = {"orderId": "o1", "symbol": SYM, "side": "BUY", "type": "LIMIT", "price": 15000, "quantity": 10}


def post(client: httpx.Client, path: str, doc) -> httpx.Response:
    return client.post(path, json=doc)


def test_health_order_seed_book_and_reset(shard_factory):
    shard = shard_factory("a")
    with shard.client() as c:
        assert c.get("/health").json() == {"status": "UP", "shardId": "a"}
        r = post(c, "/orders", GOOD)
        assert r.status_code == 200
        ack = r.json()
        assert ack["status"] == "ACCEPTED" and ack["orderId"] == "o1" and ack["shardId"] == "a"
        assert isinstance(ack["timestamp"], int)
        seed = [{**GOOD, "orderId": f"s{i}", "side": "SELL", "price": 15001 + i} for i in range(3)]
        assert post(c, "/seed", {"orders": seed}).json() == {"seeded": 3}
        book = c.get(f"/book/{SYM}").json()
        assert book["bids"] == [[15000, [["o1", 10]]]]
        assert [level[0] for level in book["asks"]] == [15001, 15002, 15003]
        assert post(c, "/admin/reset", {}).status_code == 200
        assert c.get(f"/book/{SYM}").json() == {"symbol": SYM, "bids": [], "asks": []}
        assert c.get("/book/NOPE").status_code == 404


BAD_ORDERS = [
    ({**GOOD, "quantity": 0}, "quantity"),
    ({**GOOD, "price": -1}, "price"),
    ({**GOOD, "side": "HOLD"}, "side"),
    ({**GOOD, "type": "STOP"}, "type"),
    ({**GOOD, "symbol": "TEST-ASSET-E"}, "symbol"),  # owned by shard b
    ({k: v for k, v in GOOD.items() if k != "orderId"}, "orderId"),
    ({**GOOD, "quantity": "10"}, "quantity"),
    ({**GOOD, "type": "MARKET"}, "price"),
]


@pytest.mark.parametrize(("doc", "field"), BAD_ORDERS)
def test_invalid_orders_get_400_naming_the_field(shard_factory, doc, field):
    shard = shard_factory("a")
    with shard.client() as c:
        r = post(c, "/orders", doc)
        assert r.status_code == 400
        assert r.json()["status"] == "REJECTED" and field in r.json()["reason"]
        assert post(c, "/orders", GOOD).status_code == 200  # still serving


def test_transport_level_rejections_and_still_serving(shard_factory):
    shard = shard_factory("a")
    with shard.client() as c:
        r = c.post("/orders", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 400 and "malformed JSON" in r.json()["reason"]
        r = c.post("/orders", content=b"orderId=1", headers={"content-type": "text/plain"})
        assert r.status_code == 415 and "content-type" in r.json()["reason"]
        r = c.post("/orders", content=b"{" + b" " * 10_000 + b"}", headers={"content-type": "application/json"})
        assert r.status_code == 413 and "limit" in r.json()["reason"]
        r = c.post("/seed", json={"orders": [{**GOOD, "type": "MARKET", "price": None}]})
        assert r.status_code == 400 and "orders[0].type" in r.json()["reason"]
        assert c.get("/orders").status_code == 405
        assert post(c, "/orders", GOOD).status_code == 200


def test_full_ring_answers_503_and_loses_nothing_accepted(shard_factory):
    """With a 2-slot queue, a burst overflows it: the excess gets 503, accepted orders all rest."""
    shard = shard_factory("a", RING_BUFFER_SIZE="2")

    async def burst() -> list[tuple[int, str]]:
        async with aiohttp.ClientSession(base_url=shard.url) as s:

            async def one(i: int) -> tuple[int, str]:
                doc = {**GOOD, "orderId": f"b{i}", "price": 10_000 + i}  # bids that never cross
                async with s.post("/orders", json=doc) as r:
                    return r.status, (await r.json())["orderId"]

            return await asyncio.gather(*(one(i) for i in range(200)))

    results = asyncio.run(burst())
    statuses = {s for s, _ in results}
    assert statuses <= {200, 503} and 503 in statuses and 200 in statuses
    accepted = {oid for s, oid in results if s == 200}
    with shard.client() as c:
        book = c.get(f"/book/{SYM}").json()
    resting = {oid for _, orders in book["bids"] for oid, _ in orders}
    assert resting == accepted


def test_bad_configuration_refuses_to_start(shard_factory):
    shard = shard_factory("a", start=False, RING_BUFFER_SIZE="1000")
    shard.process.start()
    assert shard.process._proc.wait(10) == 2
    assert "RING_BUFFER_SIZE must be a power of two" in shard.process.log_tail()
    assert "Traceback" not in shard.process.log_tail()


def test_sigterm_drains_and_exits_zero(shard_factory):
    shard = shard_factory("a")
    with shard.client() as c:
        for i in range(50):
            assert post(c, "/orders", {**GOOD, "orderId": f"t{i}"}).status_code == 200
    assert shard.process.stop() == 0
    assert "stopped" in shard.process.log_tail()


def test_large_seed_and_chunked_bodies(shard_factory):
    """A seed far larger than one socket read arrives whole; a chunked order body too."""
    shard = shard_factory("a")
    seed = [
        {"orderId": f"s{i}", "symbol": SYM, "side": "SELL", "type": "LIMIT", "price": 20_000 + i % 50, "quantity": 10}
        for i in range(20_000)
    ]
    with shard.client() as c:
        r = c.post("/seed", json={"orders": seed})
        assert r.status_code == 200 and r.json() == {"seeded": 20_000}
        book = c.get(f"/book/{SYM}").json()
        assert sum(len(orders) for _, orders in book["asks"]) == 20_000

        def chunks():
            yield b'{"orderId":"c1","symbol":"TEST-ASSET-A",'
            yield b'"side":"BUY","type":"LIMIT","price":100,"quantity":1}'

        r = c.post("/orders", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text

        def big_chunks():
            for _ in range(10):
                yield b" " * 1000

        r = c.post("/orders", content=big_chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
