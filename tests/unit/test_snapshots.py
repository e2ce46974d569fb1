"""Snapshots, segments and the id window: restoring a snapshot and replaying the rest equals replaying everything."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from matchlab.shard.engine import MatchingEngine
from matchlab.shard.journal import JournalLayout
from matchlab.shard.metrics import ShardMetrics
from matchlab.shard.orders import Order
from matchlab.shard.pipeline import OrderConflict, OrderPipeline
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
        MatchingEngine("a", frozenset([SYM])), ShardMetrics("a"), publisher or RecordingPublisher(), 1024,
        snapshot_every=snapshot_every, segment_bytes=segment_bytes,
    )


async def run(directory: Path, orders: list[Order], crash: bool, **kwargs) -> OrderPipeline:
    pipeline = new_pipeline(**kwargs)
    await pipeline.start(directory, fsync=False)
    for order in orders:
        await pipeline.submit_order(order, 0.0)
    await pipeline.drain()
    if pipeline._snapshot_task is not None:
        await pipeline._snapshot_task
    if crash:  # kill -9 once everything was durable: no final mark, no stop snapshot
        for task in (pipeline._task, pipeline._marker):
            task.cancel()
        await pipeline.wal.close()
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
            layout.segment_path(live.outbox.next_index).touch()
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
