"""The event relay against a real broker (Tansu) and real processes: the journal's events, at least once.

Each kill test drives one client that sends orders one at a time (so the
journal's order is the send order), kills the relay, the shard or both with
SIGKILL mid-burst, starts them again, and then reads the topics from the
outside: the MATCH_EXECUTED events, copies dropped by ``matchId``, must be
exactly the fills a reference engine makes from the acknowledged orders,
and every acknowledged order must have its ORDER_PLACED.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Self

import httpx
import msgspec
import pytest

from matchlab.loadgen.flow import OrderFlow, seed_orders
from matchlab.observe.events import read_topic
from matchlab.shard.engine import MatchingEngine
from matchlab.shard.handoff import read_relay_mark
from matchlab.shard.journal import resolve_journal
from matchlab.shard.orders import Order
from matchlab.stack.broker import TansuBroker
from matchlab.stack.probes import free_port
from matchlab.waiting import wait_until

pytestmark = pytest.mark.integration

SYM = "TEST-ASSET-A"
SEED = seed_orders(SYM, 200, 20)
BURST_S = 1.0  # of sending before, between and after the kills
CATCH_UP_S = 60.0


class SequentialClient:
    """Sends orders one at a time until stopped; an order whose reply never came is sent again (same orderId)."""

    def __init__(self, url: str, tag: str, seed: int) -> None:
        self.url = url
        self.flow = OrderFlow([SYM], seed=seed, id_prefix=f"{tag}-")
        self.acked: list[dict] = []  # in acknowledgement order: the journal's
        self.refused = 0  # transport errors: the shard was down
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sequential-client")

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        pending = None
        with httpx.Client(base_url=self.url, timeout=5.0) as client:
            while not self.stop.is_set():
                doc = pending or self.flow.next_order()
                try:
                    reply = client.post("/orders", json=doc)
                except httpx.TransportError:
                    pending, self.refused = doc, self.refused + 1
                    time.sleep(0.02)
                    continue
                assert reply.status_code == 200, reply.text
                self.acked.append(doc)  # once, even when the retry finds it journaled (a duplicate ack)
                pending = None

    def wait_for(self, more: int, timeout: float = 30.0) -> None:
        target = len(self.acked) + more
        wait_until(lambda: len(self.acked) >= target, timeout, f"{more} more orders acknowledged")


def reference_fills(acked: list[dict]) -> dict[str, tuple]:
    """matchId -> (taker, maker, price, quantity, taker side): what the shard must have made of these orders."""
    engine = MatchingEngine("a", frozenset([SYM]))
    engine.seed(msgspec.convert(SEED, list[Order]))
    fills: dict[str, tuple] = {}
    for doc in acked:
        made: list = []
        first = engine.match_count
        engine.apply_order(msgspec.convert(doc, Order), made)
        for i, (maker, price, qty) in enumerate(made, start=1):
            fills[engine.match_id(first + i)] = (doc["orderId"], maker, price, qty, doc["side"])
    return fills


def caught_up(shard) -> None:
    """Once the orders have stopped: wait until the relay has every durable record's event confirmed (and its mark
    written)."""
    def done() -> bool:
        stats = shard.relay_stats()
        with shard.client() as c:
            journal = c.get("/admin/stats").json()
        return stats["durable"] == journal["journalRecords"] == stats["mark"] == stats["writtenMark"] \
            and stats["pending"] == 0

    wait_until(done, CATCH_UP_S, "the relay to confirm every event and write its mark", interval=0.2)


def assert_topics_hold_exactly(bootstrap: str, tag: str, acked: list[dict]) -> tuple[int, int]:
    """Every fill once (after dropping copies by id) and every order placed; return the copies (matches, orders)."""
    expected = reference_fills(acked)
    events = read_topic(bootstrap, "matches", want=len(expected), timeout=60,
                        keep=lambda e: e["takerOrderId"].startswith(f"{tag}-"))
    seen: dict[str, tuple] = {}
    for e in events:
        fill = (e["takerOrderId"], e["makerOrderId"], e["executionPrice"], e["executionQuantity"], e["takerSide"])
        assert seen.setdefault(e["matchId"], fill) == fill, f"two different events under {e['matchId']}"
        assert e["type"] == "MATCH_EXECUTED" and e["_key"] == e["symbol"] == SYM
    missing = sorted(set(expected) - set(seen), key=lambda m: int(m.split("-")[1]))
    assert not missing, f"{len(missing)} of {len(expected)} fills never reached the topic, e.g. {missing[:5]}"
    assert seen == expected, "the topic's fills differ from the reference engine's"
    placed = read_topic(bootstrap, "orders", want=len(acked), timeout=60,
                        keep=lambda e: e["orderId"].startswith(f"{tag}-"))
    placed_ids = {e["orderId"] for e in placed}
    lost = {d["orderId"] for d in acked} - placed_ids
    assert not lost, f"{len(lost)} acknowledged orders have no ORDER_PLACED, e.g. {sorted(lost)[:5]}"
    assert placed_ids == {d["orderId"] for d in acked}
    return len(events) - len(seen), len(placed) - len(placed_ids)


def seeded(shard) -> None:
    with shard.client() as c:
        assert c.post("/seed", json={"orders": SEED}).status_code == 200


def test_the_matching_process_maps_no_kafka_client(shard_factory, broker):
    shard = shard_factory("a", kafka=broker.bootstrap)
    shard_maps = Path(f"/proc/{shard.process.pid}/maps").read_text()
    relay_maps = Path(f"/proc/{shard.relay.pid}/maps").read_text()
    assert "librdkafka" not in shard_maps and "confluent_kafka" not in shard_maps
    assert "librdkafka" in relay_maps or "confluent_kafka" in relay_maps  # the check can tell


@pytest.mark.parametrize("killed", ["relay", "shard", "both"])
def test_kill_9_mid_burst_keeps_every_event(shard_factory, broker, killed):
    """SIGKILL at an arbitrary point of a burst, then a restart: no event lost, copies only as ids can drop them."""
    shard = shard_factory("a", kafka=broker.bootstrap)
    seeded(shard)
    tag = f"k{killed}{time.time_ns()}"
    with SequentialClient(shard.url, tag, seed=len(killed)) as client:
        client.wait_for(200)
        time.sleep(BURST_S)  # fault injection point, mid-burst
        if killed in ("relay", "both"):
            shard.relay.kill()
        if killed in ("shard", "both"):
            shard.process.kill()
        time.sleep(BURST_S)  # orders go on (the relay killed) or are refused (the shard killed)
        if killed != "relay":
            shard.process.start()  # the relay, killed too, stays down a little longer: it restarts from its mark
        else:
            shard.start_relay()
        client.wait_for(200)
        if killed == "both":
            shard.start_relay()
        client.wait_for(200)
    if killed != "relay":
        assert client.refused > 0, "the shard was down: some request must have failed"
    caught_up(shard)
    copies = assert_topics_hold_exactly(broker.bootstrap, tag, client.acked)
    print(f"{killed} killed: {len(client.acked)} orders acknowledged, copies sent again (matches, orders): {copies}")


def test_a_frozen_broker_leaves_the_shard_ready_and_shows_only_as_relay_lag(shard_factory, tmp_path):
    port = free_port()
    with TansuBroker(port, tmp_path / "frozen-broker.log") as b:
        shard = shard_factory("a", kafka=b.bootstrap)
        seeded(shard)
        tag = f"frozen{time.time_ns()}"
        with SequentialClient(shard.url, tag, seed=5) as client:
            client.wait_for(100)
            b.process.suspend()
            try:
                client.wait_for(300)
                time.sleep(1.5)  # the lag's age grows past a second
                stats = shard.relay_stats()
                assert httpx.get(f"{shard.url}/ready").status_code == 200  # the journal's, never the broker's
                assert httpx.get(f"{shard.relay_url}/ready").status_code == 200
                assert stats["lagRecords"] > 300 and stats["lagSeconds"] > 1.0 and stats["pending"] > 0, stats
            finally:
                b.process.resume()
            client.wait_for(100)
        caught_up(shard)
        assert shard.relay_stats()["lagSeconds"] == 0
        copies = assert_topics_hold_exactly(b.bootstrap, tag, client.acked)
    assert copies == (0, 0), f"an outage without a crash sends nothing twice: {copies}"


def test_the_journal_is_compacted_only_behind_the_relays_mark(shard_factory, tmp_path):
    """Snapshots every 300 records start new segments; while the broker is frozen none may go, afterwards they do."""
    port = free_port()
    with TansuBroker(port, tmp_path / "compaction-broker.log") as b:
        shard = shard_factory("a", kafka=b.bootstrap, SNAPSHOT_EVERY_RECORDS="300")
        layout = resolve_journal(shard.wal_path)
        seeded(shard)
        tag = f"compact{time.time_ns()}"
        with SequentialClient(shard.url, tag, seed=9) as client:
            client.wait_for(50)
            b.process.suspend()
            try:
                client.wait_for(1500)  # several snapshots, each followed by a compaction
                frozen_mark = read_relay_mark(layout)
                snapshots = layout.snapshots()
                assert len(snapshots) >= 2 and snapshots[0][0] > frozen_mark  # without the relay, it would compact
                oldest = layout.segments()[0][0]
                assert oldest <= frozen_mark, f"segments from {oldest} on are left, the relay needs {frozen_mark}"
                shard.relay.kill()  # and a relay restarted now finds its mark's records
            finally:
                b.process.resume()
            shard.start_relay()
            wait_until(lambda: shard.relay_stats()["writtenMark"] > frozen_mark + 2000, CATCH_UP_S,
                       "the restarted relay to catch up past the outage")
            client.wait_for(1000)  # more snapshots, now behind a mark that moved on
        caught_up(shard)
        wait_until(lambda: layout.segments()[0][0] > frozen_mark, 30, "compaction past the old mark")
        assert_topics_hold_exactly(b.bootstrap, tag, client.acked)
