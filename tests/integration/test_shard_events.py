"""Events over the Kafka protocol against a real broker (Tansu), consumed with confluent-kafka.

A shard with a broker runs with its relay (``shard_factory`` starts both), as
every stack runs it; the relay's own faults are in ``test_relay``. The
in-process publisher (EVENTS_MODE=inprocess) keeps its tests here too.
"""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest

from matchlab.observe.events import read_topic
from matchlab.shard.config import DEFAULT_EVENT_LINGER_MS
from matchlab.shard.events import EventPublisher
from matchlab.shard.metrics import ShardMetrics
from matchlab.stack.broker import TansuBroker
from matchlab.stack.probes import free_port
from matchlab.waiting import wait_until

pytestmark = pytest.mark.integration

SYM = "TEST-ASSET-A"
CONSUME_TIMEOUT_S = 20.0


def consume(bootstrap: str, topic: str, want: int, timeout: float = CONSUME_TIMEOUT_S) -> list[dict]:
    return read_topic(bootstrap, topic, want=want, timeout=timeout)


def order(oid: str, side: str, qty: int, price: int) -> dict:
    return {"orderId": oid, "symbol": SYM, "side": side, "type": "LIMIT", "price": price, "quantity": qty}


def test_seeded_sell_and_crossing_buy_yield_one_match_event(shard_factory, broker):
    shard = shard_factory("a", kafka=broker.bootstrap)
    tag = f"ev{time.monotonic_ns()}"
    with shard.client() as c:
        assert c.post("/seed", json={"orders": [order(f"{tag}-s", "SELL", 10, 15005)]}).status_code == 200
        assert c.post("/orders", json=order(f"{tag}-b", "BUY", 4, 15010)).status_code == 200
    events = [e for e in consume(broker.bootstrap, "matches", want=10, timeout=5) if e["takerOrderId"].startswith(tag)]
    assert len(events) == 1
    e = events[0]
    assert e["type"] == "MATCH_EXECUTED" and e["_key"] == SYM
    assert (e["makerOrderId"], e["takerOrderId"]) == (f"{tag}-s", f"{tag}-b")
    assert (e["executionPrice"], e["executionQuantity"], e["takerSide"]) == (15005, 4, "BUY")
    assert e["symbol"] == SYM and e["matchId"].startswith("a-") and isinstance(e["timestamp"], int)
    placed = [e for e in consume(broker.bootstrap, "orders", want=1000, timeout=3) if e["orderId"] == f"{tag}-b"]
    assert len(placed) == 1 and placed[0]["type"] == "ORDER_PLACED" and placed[0]["price"] == 15010


def test_a_shards_events_share_its_partition_each_keyed_by_its_symbol(shard_factory, broker):
    """Fewer produce requests (one partition per topic per shard), a symbol's events still in one partition."""
    spread, own = shard_factory("b", kafka=broker.bootstrap, EVENT_PARTITION="key"), shard_factory("b", kafka=broker.bootstrap)
    tag = f"pt{time.monotonic_ns()}"
    symbols = ["TEST-ASSET-E", "TEST-ASSET-F", "TEST-ASSET-G", "TEST-ASSET-H"]
    for name, shard in (("key", spread), ("own", own)):
        with shard.client() as c:
            for sym in symbols:
                sell, buy = order(f"{tag}-{name}-{sym}-s", "SELL", 1, 15001), order(f"{tag}-{name}-{sym}-b", "BUY", 1, 15001)
                sell["symbol"] = buy["symbol"] = sym
                assert c.post("/seed", json={"orders": [sell]}).status_code == 200
                assert c.post("/orders", json=buy).status_code == 200
    events = read_topic(broker.bootstrap, "matches", want=2 * len(symbols), timeout=CONSUME_TIMEOUT_S,
                        keep=lambda e: e["takerOrderId"].startswith(tag))
    where = {(e["takerOrderId"].split("-")[1], e["_key"]): e["_partition"] for e in events}
    assert sorted(k for name, k in where if name == "own") == symbols
    assert {p for (name, _), p in where.items() if name == "own"} == {1}  # shard b's partition
    assert len({p for (name, _), p in where.items() if name == "key"}) > 1  # librdkafka's partitioner spreads
    assert all(e["_key"] == e["symbol"] for e in events)


def test_shard_serves_without_broker_and_delivers_once_it_appears(shard_factory, tmp_path):
    port = free_port()
    shard = shard_factory("a", kafka=f"127.0.0.1:{port}")
    with shard.client() as c:
        assert c.post("/seed", json={"orders": [order("late-s", "SELL", 5, 15001)]}).status_code == 200
        assert c.post("/orders", json=order("late-b", "BUY", 5, 15001)).status_code == 200
    with TansuBroker(port, tmp_path / "late-broker.log") as late:
        events = consume(late.bootstrap, "matches", want=1, timeout=CONSUME_TIMEOUT_S)
    assert [(e["makerOrderId"], e["takerOrderId"]) for e in events] == [("late-s", "late-b")]


def test_broker_outage_loses_and_duplicates_nothing(shard_factory, tmp_path):
    port = free_port()
    with TansuBroker(port, tmp_path / "outage-broker.log") as b:
        shard = shard_factory("a", kafka=b.bootstrap)
        with shard.client() as c:
            n = 0

            def matched_pair() -> None:
                nonlocal n
                n += 1
                assert c.post("/seed", json={"orders": [order(f"m{n}-s", "SELL", 1, 15001)]}).status_code == 200
                assert c.post("/orders", json=order(f"m{n}-b", "BUY", 1, 15001)).status_code == 200

            for _ in range(20):
                matched_pair()
            b.process.suspend()
            try:
                for _ in range(40):  # matching goes on while the broker is frozen
                    matched_pair()
            finally:
                b.process.resume()
            for _ in range(20):
                matched_pair()
        events = consume(b.bootstrap, "matches", want=80, timeout=60)
    takers = sorted(e["takerOrderId"] for e in events)
    assert takers == sorted(f"m{i}-b" for i in range(1, 81))  # each exactly once


def librdkafka_cpu_s() -> float:
    """CPU seconds of this process's librdkafka threads (named ``rdk:...``)."""
    total = 0.0
    for t in psutil.Process().threads():
        try:
            name = Path(f"/proc/self/task/{t.id}/comm").read_text().strip()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        if name.startswith("rdk:"):
            total += t.user_time + t.system_time
    return total


def test_a_frozen_broker_costs_the_publisher_no_cpu(tmp_path):
    """librdkafka's idempotent producer spun at ~0.55 of a core per shard (0.96-0.99 alone) while a frozen
    broker held its five requests: a broker outage reached every shard through the CPU. The shard's
    publisher waits instead, and then delivers every event once."""
    port = free_port()
    delivered: list[bytes] = []
    with TansuBroker(port, tmp_path / "frozen-broker.log") as b:
        metrics = ShardMetrics("a")
        publisher = EventPublisher(b.bootstrap, "frozen-test", DEFAULT_EVENT_LINGER_MS, 0,
                                   errors=metrics.publish_errors, publish_seconds=metrics.publish)
        sent, cpu = 0, []
        t0 = time.monotonic()
        while time.monotonic() - t0 < 6.0:  # 300 events/s, the broker frozen after the first second
            elapsed = time.monotonic() - t0
            if sent == 300:
                b.process.suspend()
            if not cpu and elapsed > 3.0:  # the requests' window long full, the rest of the events waiting
                cpu.append((librdkafka_cpu_s(), time.monotonic()))
            key = f"e{sent}".encode()
            publisher.publish("matches", key, b"{}", lambda key=key: delivered.append(key))
            publisher._producer.poll(0)
            sent += 1
            time.sleep(1 / 300)
        cpu.append((librdkafka_cpu_s(), time.monotonic()))
        b.process.resume()
        remaining = publisher._producer.flush(60)
    used = (cpu[1][0] - cpu[0][0]) / (cpu[1][1] - cpu[0][1])
    print(f"librdkafka threads while the broker was frozen: {used:.3f} CPU ({sent} events)")
    assert used < 0.1, f"the publisher used {used:.2f} of a core while the broker was frozen"
    assert remaining == 0 and sorted(delivered) == sorted(f"e{n}".encode() for n in range(sent))  # all, once


def test_in_process_events_queued_at_a_kill_9_are_published_after_the_restart(shard_factory, tmp_path):
    """EVENTS_MODE=inprocess: the producer's queue dies with the process; the journal (the outbox) brings every
    event back.

    Events confirmed and covered by a delivery mark before the kill are not
    sent again; the ones after it may be (at-least-once across a crash).
    """
    port = free_port()
    with TansuBroker(port, tmp_path / "kill-broker.log") as b:
        shard = shard_factory("a", kafka=b.bootstrap, EVENTS_MODE="inprocess")
        assert shard.relay is None
        with shard.client() as c:

            def pair(n: int) -> None:
                assert c.post("/seed", json={"orders": [order(f"k{n}-s", "SELL", 1, 15001)]}).status_code == 200
                assert c.post("/orders", json=order(f"k{n}-b", "BUY", 1, 15001)).status_code == 200

            def marked() -> bool:  # every event confirmed, and a mark journaled past them (it is the last record)
                stats = c.get("/admin/stats").json()
                return stats["eventsPending"] == 0 and stats["deliveryMark"] == stats["journalRecords"] - 1

            for n in range(1, 11):
                pair(n)
            wait_until(marked, 10, "a delivery mark covering the first 10 pairs' events")
            b.process.suspend()  # from here on nothing the shard sends is confirmed
            for n in range(11, 41):
                pair(n)
            stats = c.get("/admin/stats").json()
        assert stats["matches"] == 40 and stats["eventsPending"] == 60, stats  # 30 orders + 30 matches unconfirmed
        shard.process.kill()
        b.process.resume()
        shard.start()  # same journal: re-publishes what was never confirmed
        with shard.client() as c:
            wait_until(lambda: c.get("/admin/stats").json()["eventsPending"] == 0, 30, "re-published events confirmed")
            assert c.get("/admin/stats").json()["matches"] == 40  # replayed, not counted again
        matches = consume(b.bootstrap, "matches", want=40, timeout=30)
        placed = consume(b.bootstrap, "orders", want=40, timeout=30)
    match_ids, taker_ids, order_ids = ([e[k] for e in events] for events, k in (
        (matches, "matchId"), (matches, "takerOrderId"), (placed, "orderId")))
    expected = {f"k{n}-b" for n in range(1, 41)}
    assert set(taker_ids) == expected and set(match_ids) == {f"a-{n}" for n in range(1, 41)}
    assert set(order_ids) == expected
    # Marked before the kill: exactly once. After the mark: once or twice (the frozen broker may still
    # have taken the killed producer's last in-flight requests before the restart re-sent them).
    early = {f"k{n}-b" for n in range(1, 11)}
    assert sorted(i for i in taker_ids if i in early) == sorted(early)
    assert sorted(i for i in order_ids if i in early) == sorted(early)
    print(f"after kill -9: {len(matches) - 40} match and {len(placed) - 40} order events sent twice (all after the mark)")
