"""Snapshots, segments and the id window: restoring a snapshot and replaying the rest equals replaying everything."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from matchlab.shard.engine import MatchingEngine
from matchlab.shard.event_modes import InProcessEvents, RelayedEvents
from matchlab.shard.handoff import write_relay_mark
from matchlab.shard.idwindow import CHUNK_IDS, IdWindow, fingerprint_entry
from matchlab.shard.journal import JournalLayout, SnapshotFile, snapshot_floor
from matchlab.shard.metrics import ShardMetrics
from matchlab.shard.orders import Order
from matchlab.shard.pipeline import OrderConflict, OrderPipeline
from matchlab.shard.snapshots import SnapshotV1, capture, restore
from tests.unit.test_wal import RecordingPublisher

SYM = "TEST-ASSET-A"

raw_orders = st.lists(
    st.tuples(st.sampled_from(["BUY", "SELL"]), st.sampled_from(["LIMIT", "LIMIT", "MARKET"]),
              st.integers(98, 102), st.integers(1, 20)),
    min_size=1, max_size=120,
)


def to_orders(raw: list[tuple]) -> list[Order]:
    return [
        Order(orderId=f"o{i}", symbol=SYM, side=side, type=kind, quantity=qty, price=price if kind == "LIMIT" else None)
        for i, (side, kind, price, qty) in enumerate(raw)
    ]


def new_pipeline(publisher=None, snapshot_every: int = 10**9, segment_bytes: int = 64 << 20) -> OrderPipeline:
    return OrderPipeline(
        MatchingEngine("a", frozenset([SYM])), ShardMetrics("a"), InProcessEvents(publisher or RecordingPublisher()), 1024,
        snapshot_every=snapshot_every, segment_bytes=segment_bytes,
    )


async def run(directory: Path, orders: list[Order], crash: bool, **kwargs) -> OrderPipeline:
    pipeline = new_pipeline(**kwargs)
    await pipeline.start(directory, fsync=False)
    for order in orders:
        await pipeline.submit_order(order, 0.0)
    await pipeline.drain()
    await pipeline.snapshots.wait()
    if crash:  # kill -9 once everything was durable: no final mark, no stop snapshot
        await pipeline.abandon()
    else:
        await pipeline.close()
    return pipeline


def state(p: OrderPipeline) -> tuple:
    return p.engine.books[SYM].snapshot(), p.engine.match_count, sorted(p.ids._ids)


@settings(max_examples=40, deadline=None)
@given(raw_orders, st.integers(3, 40), st.integers(200, 2000), st.floats(0, 1), st.sampled_from(["none", "torn-snapshot", "mid-snapshot", "mid-rotation"]))
def test_snapshot_plus_segments_equals_full_replay(raw, every, segment_bytes, crash_at, damage):
    orders = to_orders(raw)
    split = int(len(orders) * crash_at)
    with tempfile.TemporaryDirectory() as tmp:
        journal = Path(tmp) / "journal"
        # Two runs, the second killed at a random point, with snapshots and rotations along the way.
        asyncio.run(run(journal, orders[:split], crash=False, snapshot_every=every, segment_bytes=segment_bytes))
        live = asyncio.run(run(journal, orders[split:], crash=True, snapshot_every=every, segment_bytes=segment_bytes))
        layout = JournalLayout(journal, "wal.log")
        snapshots = layout.snapshots()
        if damage == "torn-snapshot" and snapshots:  # the newest snapshot is corrupt: fall back to the previous one
            path = snapshots[-1][1]
            path.write_bytes(path.read_bytes()[:-3])
        elif damage == "mid-snapshot":  # killed while writing a snapshot: only its temp file exists
            (journal / "wal.log.snap.000000999999.tmp").write_bytes(b"MLSNAP1\npartial")
        elif damage == "mid-rotation":  # killed right after creating the next segment
            layout.segment_path(live.next_index).touch()
        restarted = asyncio.run(run(journal, [], crash=True, snapshot_every=every, segment_bytes=segment_bytes))
        reference = MatchingEngine("a", frozenset([SYM]))
        for order in orders:
            reference.apply_order(order, [])
    assert state(restarted) == state(live)
    assert restarted.engine.books[SYM].snapshot() == reference.books[SYM].snapshot()
    assert restarted.engine.match_count == reference.match_count
    assert sorted(restarted.ids._ids) == sorted(o.orderId for o in orders)


def test_a_repeated_order_id_gets_the_original_ack_and_is_matched_once(tmp_path: Path):
    publisher = RecordingPublisher()

    async def main() -> list:
        pipeline = new_pipeline(publisher)
        await pipeline.start(tmp_path, fsync=True)
        sell = Order(orderId="s1", symbol=SYM, side="SELL", type="LIMIT", quantity=5, price=100)
        buy = Order(orderId="b1", symbol=SYM, side="BUY", type="LIMIT", quantity=5, price=100)
        replies = [await pipeline.submit_order(o, 0.0) for o in (sell, buy, buy, sell)]
        try:
            await pipeline.submit_order(Order(orderId="b1", symbol=SYM, side="BUY", type="LIMIT", quantity=6, price=100), 0.0)
            replies.append("accepted")
        except OrderConflict as exc:
            replies.append(str(exc))
        await pipeline.close()
        again = new_pipeline(publisher)  # the window survives a restart
        await again.start(tmp_path, fsync=True)
        replies.append(await again.submit_order(buy, 0.0))
        replies.append(again.engine.match_count)
        await again.submit_reset()  # clears the window with the books
        replies.append(await again.submit_order(buy, 0.0))
        await again.close()
        return replies

    r = asyncio.run(main())
    assert r[2] == (r[1][0], True) and r[3] == (r[0][0], True)  # original ack time, marked duplicate
    assert not r[0][1] and not r[1][1]
    assert "different order" in r[4]
    assert r[5] == (r[1][0], True) and r[6] == 1  # after the restart: still a duplicate, still one match
    assert r[7][1] is False  # after a reset the id is new again
    placed = [v for t, _, v in publisher.sent if t == "orders"]
    assert len(placed) == 3  # s1, b1, and b1 after the reset: no ORDER_PLACED for a repeat


def test_disk_stays_bounded_over_a_long_run(tmp_path: Path):
    orders = [
        Order(orderId=f"o{i}", symbol=SYM, side="BUY" if i % 2 else "SELL", type="LIMIT", quantity=1, price=100)
        for i in range(6000)
    ]
    sizes = []
    for chunk in range(3):
        asyncio.run(run(tmp_path, orders[chunk * 2000:(chunk + 1) * 2000], crash=False, snapshot_every=1000, segment_bytes=20_000))
        sizes.append(JournalLayout(tmp_path, "wal.log").disk_bytes())
    layout = JournalLayout(tmp_path, "wal.log")
    assert len(layout.snapshots()) == 2
    assert sizes[2] < sizes[0] * 1.5, sizes  # compaction keeps up: not three times the first run's journal
    assert layout.segments()[0][0] > 0  # the oldest segments are gone


# -- the id window's chunks and what a snapshot costs the loop ---------------------------------------------

window_ops = st.lists(st.one_of(
    st.tuples(st.just("add"), st.integers(1, 3000), st.integers(0, 400)),  # n ids, ms step
    st.tuples(st.just("forget"), st.integers(0, 5), st.just(0)),  # one of the newest ids
), min_size=1, max_size=12)


def ordered(window: IdWindow) -> list[tuple[int, list[str]]]:
    return [(piece.first_ms, list(piece.members)) for piece in window._slices]


@settings(max_examples=60, deadline=None)
@given(window_ops, st.integers(0, 2500))
def test_a_restored_window_equals_the_encoded_one_and_encodes_alike(ops, exclude):
    window, n, now = IdWindow(20_000, 5_000), 0, 0
    for op, count, step in ops:
        if op == "add":
            for _ in range(count):
                n += 1
                now += step % 3
                window.add(f"id{n}", fingerprint_entry(str(n).encode(), now), now)
        elif len(window):
            window.forget(list(window._ids)[-1 - min(count, len(window) - 1)])
    encoded = window.encode(exclude_newest=exclude)
    restored = IdWindow(20_000, 5_000)
    restored.restore(encoded.head, encoded.chunks)
    kept = list(window._ids)[: max(0, len(window) - exclude)]
    assert list(restored._ids) == kept and all(restored.get(i) == window.get(i) for i in kept)
    assert sum(count for _, count in encoded.head.bounds) == len(kept)
    again = restored.encode()
    assert [restored.get(i) for i in kept] == [window.get(i) for i in kept]
    assert list(IdWindow(20_000, 5_000)._ids) == [] and again.head.bounds == encoded.head.bounds
    for more in range(3000):  # both grow on alike: the restored one's sealed chunks are as good as the original's
        for w in (window, restored):
            w.add(f"more{more}", b"e" * 16, now + 1)
    if not exclude:
        assert window.encode().chunks == restored.encode().chunks


def test_a_snapshot_encodes_only_the_ids_no_chunk_holds_yet(monkeypatch):
    """The loop's share of a snapshot does not grow with the window: the sealed chunks are taken as they are."""
    window = IdWindow(1_000_000, 600_000)
    for i in range(300_000):
        window.add(f"order-{i}", b"e" * 16, i // 100)
    encoded_now: list[int] = []
    real = IdWindow._encode_ids
    monkeypatch.setattr(IdWindow, "_encode_ids", lambda self, members: encoded_now.append(len(members)) or real(self, members))
    engine = MatchingEngine("a", frozenset([SYM]))
    parts = capture(engine, window, exclude_newest=40)
    assert sum(encoded_now) < CHUNK_IDS + 40, encoded_now
    assert len(parts) > 250  # the head and ~300 chunks, written by a thread


def test_a_version_1_snapshot_of_an_older_journal_still_restores():
    window = IdWindow(1000, 60_000)
    for i in range(30):
        window.add(f"o{i}", b"e" * 16, i)
    whole = msgspec.msgpack.encode((1000, 60_000, [(0, 30)], dict(window._ids)))
    engine = MatchingEngine("a", frozenset([SYM]))
    engine.seed([Order(orderId="s", symbol=SYM, side="SELL", type="LIMIT", quantity=3, price=101)])
    payload = msgspec.msgpack.encode(SnapshotV1(1, 40, 7, 35, engine.export_books(), whole))
    restored_engine, restored = MatchingEngine("a", frozenset([SYM])), IdWindow(1000, 60_000)
    assert restore(SnapshotFile(1, 40, 35, memoryview(payload)), restored_engine, restored) == 7
    assert list(restored._ids) == list(window._ids) and restored_engine.books[SYM].snapshot() == engine.books[SYM].snapshot()


# -- snapshots and compaction with the relay ---------------------------------------------------------------


async def relay_run(directory: Path, orders: list[Order], relay: bool) -> OrderPipeline:
    pipeline = OrderPipeline(MatchingEngine("a", frozenset([SYM])), ShardMetrics("a"), RelayedEvents(relay=relay), 1024,
                             snapshot_every=100, segment_bytes=1 << 20)
    await pipeline.start(directory, fsync=False)
    for order in orders:
        await pipeline.submit_order(order, 0.0)
    await pipeline.drain()
    await pipeline.close()
    return pipeline


def test_with_a_relay_segments_stay_until_its_mark_passes_them(tmp_path: Path):
    orders = [Order(orderId=f"o{i}", symbol=SYM, side="BUY" if i % 2 else "SELL", type="LIMIT", quantity=1, price=100)
              for i in range(3000)]
    layout = JournalLayout(tmp_path, "wal.log")
    asyncio.run(relay_run(tmp_path, orders[:1000], relay=True))  # no relay has written a mark: nothing goes
    assert layout.segments()[0][0] == 0 and len(layout.snapshots()) == 2
    write_relay_mark(layout, 700)
    asyncio.run(relay_run(tmp_path, orders[1000:2000], relay=True))
    assert 0 < layout.segments()[0][0] <= 700  # compacted up to the mark, not past it
    assert all(snapshot_floor(path) <= 700 for _, path in layout.snapshots())
    asyncio.run(relay_run(tmp_path, orders[2000:], relay=False))  # no broker, no relay: the cut alone decides
    assert layout.segments()[0][0] > 700
    restarted = asyncio.run(relay_run(tmp_path, [], relay=True))  # from the newest snapshot and what follows it
    reference = MatchingEngine("a", frozenset([SYM]))
    for order in orders:
        reference.apply_order(order, [])
    assert restarted.engine.books[SYM].snapshot() == reference.books[SYM].snapshot()
    assert restarted.engine.match_count == reference.match_count and len(restarted.ids) == 3000


def test_a_snapshot_asked_for_between_loads_is_written_at_once_and_restores(tmp_path: Path):
    orders = to_orders([("SELL", "LIMIT", 100 + i % 3, 2) for i in range(30)] + [("BUY", "MARKET", 0, 5)] * 5)

    async def main() -> tuple:
        pipeline = new_pipeline(snapshot_every=10**6)  # far off: only the asked-for one is taken
        await pipeline.start(tmp_path, fsync=False)
        for order in orders:
            await pipeline.submit_order(order, 0.0)
        await pipeline.drain()
        before = pipeline.records_since_snapshot
        taken = await pipeline.snapshot_now()
        after = pipeline.records_since_snapshot
        written = pipeline.layout.snapshots()
        expected = state(pipeline)
        await pipeline.close()
        again = new_pipeline()
        await again.start(tmp_path, fsync=False)
        restored = state(again)
        await again.close()
        return before, taken, after, written, expected, restored

    before, taken, after, written, expected, restored = asyncio.run(main())
    assert taken and before > 10 and after <= 3  # what follows the cut: the delivery marks journaled since
    assert written and restored == expected
