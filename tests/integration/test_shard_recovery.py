"""Crash recovery: a shard killed with SIGKILL mid-load comes back with exactly the acknowledged book."""

from __future__ import annotations

import threading
import time

import httpx
import msgspec
import pytest

from matchlab.loadgen.flow import OrderFlow, seed_orders
from matchlab.shard.engine import MatchingEngine
from matchlab.shard.orders import Order
from matchlab.shard.wal import encode_record, scan

pytestmark = pytest.mark.integration

SYM = "TEST-ASSET-A"
LOAD_BEFORE_KILL_S = 1.0
MAX_ORDERS = 20_000


def expected_book(seed: list[dict], orders: list[dict]) -> dict:
    engine = MatchingEngine("a", frozenset([SYM]))
    engine.seed(msgspec.convert(seed, list[Order]))
    for doc in orders:
        engine.apply_order(msgspec.convert(doc, Order), [])
    return engine.books[SYM].snapshot()


def assert_acknowledged_book(recovered: dict, seed: list[dict], acked: list[dict], in_flight: list[dict]) -> None:
    """The book after a crash and restart is the acknowledged orders' book: the order in flight at the kill may
    or may not have become durable; nothing else may differ."""
    candidates = [expected_book(seed, acked)]
    if in_flight:
        candidates.append(expected_book(seed, acked + in_flight))
    assert recovered in candidates, f"{len(acked)} acknowledged orders; the recovered book differs"


def send_until_refused(url: str, flow: OrderFlow, acked: list[dict], in_flight: list[dict]) -> None:
    """Orders one at a time (so the arrival order is the send order) until the shard stops answering:
    ``acked`` gets each acknowledged one, ``in_flight`` holds the one sent and not yet answered."""
    with httpx.Client(base_url=url, timeout=5.0) as client:
        for _ in range(MAX_ORDERS):
            doc = flow.next_order()
            in_flight[:] = [doc]
            try:
                r = client.post("/orders", json=doc)
            except httpx.TransportError:
                return
            assert r.status_code == 200, r.text
            acked.append(doc)
            in_flight.clear()


def test_sigkill_mid_load_then_restart_holds_the_acknowledged_book(shard_factory):
    shard = shard_factory("a")
    seed = seed_orders(SYM, 200, 20)
    with shard.client() as c:
        assert c.post("/seed", json={"orders": seed}).status_code == 200

    acked: list[dict] = []
    in_flight: list[dict] = []
    flow = OrderFlow([SYM], seed=11)
    worker = threading.Thread(target=send_until_refused, args=(shard.url, flow, acked, in_flight))
    worker.start()
    time.sleep(LOAD_BEFORE_KILL_S)  # fault injection point, not a wait for state
    shard.process.kill()
    worker.join(10)
    assert len(acked) > 100, "the load did not get going before the kill"

    shard.start()  # same journal
    with shard.client() as c:
        recovered = c.get(f"/book/{SYM}").json()
    assert_acknowledged_book(recovered, seed, acked, in_flight)


def test_torn_last_record_is_truncated_and_the_shard_serves(shard_factory):
    shard = shard_factory("a")
    seed = seed_orders(SYM, 10, 4)
    with shard.client() as c:
        assert c.post("/seed", json={"orders": seed}).status_code == 200
        before = c.get(f"/book/{SYM}").json()
    shard.process.kill()
    intact = shard.wal_path.stat().st_size
    with open(shard.wal_path, "ab") as f:  # half a record, as a crash mid-write leaves it
        f.write(encode_record(1, b"\x81\xa7orderId\xa3bad" * 10)[:25])
    shard.start()
    with shard.client() as c:
        assert c.get(f"/book/{SYM}").json() == before
        order = {"orderId": "after", "symbol": SYM, "side": "BUY", "type": "LIMIT", "price": 1, "quantity": 1}
        assert c.post("/orders", json=order).status_code == 200
    assert "torn or corrupt record" in shard.process.log_tail(200)
    _, valid_end, size = scan(shard.wal_path)
    assert valid_end == size and size > intact  # truncated, then appended to cleanly
