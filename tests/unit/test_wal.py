"""The journal: record format, group commit, torn-tail recovery, and replay through the pipeline."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import orjson
import pytest

from matchlab.shard.engine import MatchingEngine
from matchlab.shard.event_modes import InProcessEvents
from matchlab.shard.journal import JournalLayout
from matchlab.shard.metrics import ShardMetrics
from matchlab.shard.orders import Order
from matchlab.shard.pipeline import OrderPipeline
from matchlab.shard.records import REC_DELIVERED, REC_MATCH, REC_ORDER
from matchlab.shard.wal import GroupCommitLog, WalError, encode_record, recover, scan

SYM = "TEST-ASSET-A"


def test_round_trip(tmp_path: Path):
    path = tmp_path / "wal.log"
    path.write_bytes(encode_record(1, b"hello") + encode_record(2, b"") + encode_record(3, b"x" * 10_000))
    records = recover(path)
    assert records == [(1, b"hello"), (2, b""), (3, b"x" * 10_000)]


def test_torn_tail_is_truncated_never_replayed(tmp_path: Path):
    path = tmp_path / "wal.log"
    good = encode_record(1, b"first") + encode_record(1, b"second")
    torn = encode_record(1, b"third-record-payload")[:-5]
    path.write_bytes(good + torn)
    assert recover(path) == [(1, b"first"), (1, b"second")]
    assert path.stat().st_size == len(good)  # truncated in place
    assert recover(path) == [(1, b"first"), (1, b"second")]  # and stable


def test_corrupt_checksum_stops_replay_there(tmp_path: Path):
    path = tmp_path / "wal.log"
    first, second = encode_record(1, b"first"), bytearray(encode_record(1, b"second"))
    second[-1] ^= 0xFF  # flip a payload bit: checksum no longer matches
    path.write_bytes(first + bytes(second) + encode_record(1, b"after"))
    records, valid_end, size = scan(path)
    assert records == [(1, b"first")] and valid_end == len(first) and size > valid_end


def test_absurd_length_header_is_corruption(tmp_path: Path):
    path = tmp_path / "wal.log"
    path.write_bytes(encode_record(1, b"ok") + b"\xff\xff\xff\xff\x00\x00\x00\x00garbage")
    assert recover(path) == [(1, b"ok")]


@contextmanager
def counted_fsyncs() -> Iterator[list[int]]:
    """Every fsync the journal makes (the descriptors), still really fsynced."""
    calls: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)

    with mock.patch("matchlab.shard.wal.os.fsync", counting_fsync):
        yield calls


def test_group_commit_shares_one_fsync_and_acks_only_after_it(tmp_path: Path):
    async def main() -> tuple[int, int, list]:
        loop = asyncio.get_running_loop()
        durable: list = []
        with counted_fsyncs() as fsyncs:
            wal = GroupCommitLog(JournalLayout(tmp_path, "wal.log"), 0, 0, loop, lambda atts, _t: durable.extend(atts))
            futures = [wal.append(1, str(i).encode(), i) for i in range(200)]
            assert not any(f.done() for f in futures)  # nothing acknowledged before the fsync
            await asyncio.gather(*futures)
            await wal.close()
        return len(fsyncs), len({id(f) for f in futures}), durable

    fsyncs, distinct_futures, durable = asyncio.run(main())
    assert durable == list(range(200))  # handed back in append order
    assert fsyncs < 200 and distinct_futures < 200  # batched: not one fsync per record
    assert [p for _, p in recover(tmp_path / "wal.log")] == [str(i).encode() for i in range(200)]


def test_lazy_records_ride_with_the_next_urgent_fsync_or_wait_at_most_the_delay(tmp_path: Path):
    async def main() -> tuple[float, int, bool, int, float]:
        loop = asyncio.get_running_loop()
        with counted_fsyncs() as fsyncs:
            wal = GroupCommitLog(JournalLayout(tmp_path, "wal.log"), 0, 0, loop, lambda *_: None, lazy_delay_s=0.2)
            started = loop.time()
            await asyncio.wait_for(wal.append(1, b"lazy-alone", lazy=True), 5.0)  # alone: committed after the delay
            waited = loop.time() - started
            lazy = wal.append(1, b"lazy", lazy=True)
            await asyncio.sleep(0.02)
            still_waiting = not lazy.done()
            fsyncs_before = len(fsyncs)
            started = loop.time()
            await asyncio.gather(lazy, wal.append(1, b"urgent"))  # the urgent record takes the lazy one along
            shared = len(fsyncs) - fsyncs_before
            ridden = loop.time() - started
            await wal.close()
        return waited, shared, still_waiting, len(fsyncs), ridden

    waited, shared, still_waiting, _fsyncs, ridden = asyncio.run(main())
    assert 0.15 <= waited < 2.0, f"a lone lazy record was committed after {waited:.3f}s, not after the 0.2 s delay"
    assert still_waiting and shared == 1 and ridden < 0.15
    assert [p for _, p in recover(tmp_path / "wal.log")] == [b"lazy-alone", b"lazy", b"urgent"]


def test_sync_commits_lazy_records_at_once(tmp_path: Path):
    async def main() -> float:
        loop = asyncio.get_running_loop()
        wal = GroupCommitLog(JournalLayout(tmp_path, "wal.log"), 0, 0, loop, lambda *_: None, lazy_delay_s=30.0)
        wal.append(1, b"lazy", lazy=True)
        started = loop.time()
        await asyncio.wait_for(wal.sync(), 5.0)
        await wal.close()
        return loop.time() - started

    assert asyncio.run(main()) < 5.0
    assert [p for _, p in recover(tmp_path / "wal.log")] == [b"lazy"]


class RecordingPublisher:
    """Records what is published; ``confirm`` says whether the broker acknowledges it."""

    def __init__(self, confirm: bool = True) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.confirm = confirm

    def start(self) -> None:
        pass

    def publish(self, topic: str, key: bytes, value: bytes, on_delivered=None, on_failed=None) -> bool:
        self.sent.append((topic, key, value))
        if self.confirm and on_delivered is not None:
            on_delivered()
        return True

    async def close(self, timeout_s: float) -> int:
        return 0


def order(oid: str, side: str, qty: int, price: int) -> Order:
    return Order(orderId=oid, symbol=SYM, side=side, type="LIMIT", quantity=qty, price=price)


async def run_pipeline(wal: Path, orders: list[Order], publisher: RecordingPublisher, crash: bool = False) -> OrderPipeline:
    engine = MatchingEngine("a", frozenset([SYM]))
    pipeline = OrderPipeline(engine, ShardMetrics("a"), InProcessEvents(publisher), capacity=1024)
    await pipeline.start(wal, fsync=True)
    for o in orders:
        await pipeline.submit_order(o, 0.0)
    if crash:  # like kill -9 once everything was durable: no final delivery mark
        await pipeline.abandon()
    else:
        await pipeline.close()
    return pipeline


def test_replay_rebuilds_the_same_books_and_match_count(tmp_path: Path):
    wal = tmp_path / "wal.log"
    flow = [order(f"s{i}", "SELL", 5, 100 + i % 3) for i in range(6)] + [order("b1", "BUY", 12, 101)]
    live = asyncio.run(run_pipeline(wal, flow, RecordingPublisher()))
    publisher = RecordingPublisher()
    replayed = asyncio.run(run_pipeline(wal, [], publisher))
    assert replayed.engine.books[SYM].snapshot() == live.engine.books[SYM].snapshot()
    assert replayed.engine.match_count == live.engine.match_count == 3
    assert publisher.sent == []  # every match was journaled: nothing to re-publish


def test_matches_torn_off_the_journal_are_journaled_and_published_on_replay(tmp_path: Path):
    wal = tmp_path / "wal.log"
    flow = [order("s1", "SELL", 5, 100), order("s2", "SELL", 5, 100), order("b1", "BUY", 10, 100)]
    asyncio.run(run_pipeline(wal, flow, RecordingPublisher(), crash=True))  # no stop snapshot: the journal alone
    # Simulate a crash after the order was durable but before its matches were.
    records = recover(wal)
    kept = records[: [k for k, _ in records].index(REC_MATCH)]  # the tail from the first match record is torn off
    assert [k for k, _ in kept] == [REC_ORDER] * 3
    wal.write_bytes(b"".join(encode_record(k, p) for k, p in kept))
    publisher = RecordingPublisher()
    asyncio.run(run_pipeline(wal, [], publisher))
    events = [orjson.loads(v) for t, _, v in publisher.sent if t == "matches"]
    assert [(e["makerOrderId"], e["takerOrderId"], e["executionQuantity"]) for e in events] == [
        ("s1", "b1", 5),
        ("s2", "b1", 5),
    ]
    assert sum(1 for k, _ in recover(wal) if k == REC_MATCH) == 2


def events_of(publisher: RecordingPublisher) -> list[str]:
    return [(orjson.loads(v).get("matchId") or orjson.loads(v)["orderId"]) for _, _, v in publisher.sent]


def test_events_never_confirmed_before_a_crash_are_published_again_once(tmp_path: Path):
    wal = tmp_path / "wal.log"
    flow = [order("s1", "SELL", 5, 100), order("s2", "SELL", 5, 100), order("b1", "BUY", 10, 100)]
    live = RecordingPublisher(confirm=False)  # the broker never confirmed: the queue died with the process
    asyncio.run(run_pipeline(wal, flow, live, crash=True))
    again = RecordingPublisher()
    asyncio.run(run_pipeline(wal, [], again))
    assert sorted(events_of(again)) == sorted(events_of(live)) == ["a-1", "a-2", "b1", "s1", "s2"]
    third = RecordingPublisher()  # now confirmed and marked: a later restart re-sends nothing
    asyncio.run(run_pipeline(wal, [], third))
    assert third.sent == []


def test_only_events_after_the_last_delivery_mark_are_published_again(tmp_path: Path):
    wal = tmp_path / "wal.log"
    asyncio.run(run_pipeline(wal, [order("s1", "SELL", 5, 100)], RecordingPublisher()))  # confirmed, marked at close
    asyncio.run(run_pipeline(wal, [order("b1", "BUY", 5, 100)], RecordingPublisher(confirm=False), crash=True))
    again = RecordingPublisher()
    asyncio.run(run_pipeline(wal, [], again))
    assert sorted(events_of(again)) == ["a-1", "b1"]


def test_an_idle_shard_journals_no_delivery_marks(tmp_path: Path):
    async def main() -> int:
        pipeline = OrderPipeline(MatchingEngine("a", frozenset([SYM])), ShardMetrics("a"),
                                 InProcessEvents(RecordingPublisher()), 1024)
        with mock.patch("matchlab.shard.event_modes.MARK_INTERVAL_S", 0.01):
            await pipeline.start(tmp_path / "wal.log", fsync=False)
            await pipeline.submit_order(order("s1", "SELL", 5, 100), 0.0)
            await asyncio.sleep(0.3)  # ~30 mark intervals
            await pipeline.close()
        return sum(1 for kind, _ in recover(tmp_path / "wal.log") if kind == REC_DELIVERED)

    assert asyncio.run(main()) == 1  # one mark covering the order's event, then nothing while idle


@contextmanager
def fsync_taking(seconds: list[float]) -> Iterator[None]:
    """A disk whose fsync takes ``seconds[0]`` (changeable while it runs), still really fsynced."""
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        time.sleep(seconds[0])
        real_fsync(fd)

    with mock.patch("matchlab.shard.wal.os.fsync", slow_fsync):
        yield


def test_on_a_fast_disk_the_loop_commits_itself_and_still_acks_only_after_the_fsync(tmp_path: Path):
    async def main() -> GroupCommitLog:
        loop = asyncio.get_running_loop()
        with counted_fsyncs() as fsyncs:
            # "Fast" relative to a generous bar: a busy machine's occasional slow fsync must not move commits.
            wal = GroupCommitLog(JournalLayout(tmp_path, "wal.log"), 0, 0, loop, lambda *_: None, inline_max_s=0.05)
            for i in range(50):
                before = len(fsyncs)
                fut = wal.append(1, str(i).encode())
                assert not fut.done()
                await fut
                assert len(fsyncs) == before + 1  # acknowledged once its own fsync returned
            await wal.close()
        return wal

    wal = asyncio.run(main())
    assert wal.inline_commits == 50 and wal.thread_commits == 0 and wal.commit_s < 0.05
    assert [p for _, p in recover(tmp_path / "wal.log")] == [str(i).encode() for i in range(50)]


def test_a_slow_disk_moves_commits_to_the_thread_and_back_keeping_append_order(tmp_path: Path):
    fsync_s = [0.0]

    async def main() -> tuple[GroupCommitLog, list[int], list[float]]:
        loop = asyncio.get_running_loop()
        handed_back: list[int] = []
        wal = GroupCommitLog(JournalLayout(tmp_path, "wal.log"), 0, 0, loop, lambda atts, _t: handed_back.extend(atts))
        loop_stalls: list[float] = []

        async def appender(first: int) -> None:
            for i in range(first, first + 20):
                await wal.append(1, str(i).encode(), i)

        async def watch_loop() -> None:  # how long the loop went without running this
            while True:
                t = loop.time()
                await asyncio.sleep(0)
                loop_stalls.append(loop.time() - t)

        watcher = loop.create_task(watch_loop())
        await asyncio.gather(*(appender(k * 100) for k in range(3)))  # fast disk
        fsync_s[0] = 0.05
        slow_start = len(loop_stalls)
        await asyncio.gather(*(appender(1000 + k * 100) for k in range(3)))  # slow disk
        slow_stalls = loop_stalls[slow_start:]
        fsync_s[0] = 0.0
        await asyncio.gather(*(appender(2000 + k * 100) for k in range(3)))  # fast again
        watcher.cancel()
        await wal.close()
        return wal, handed_back, slow_stalls

    with fsync_taking(fsync_s):
        wal, handed_back, slow_stalls = asyncio.run(main())
    assert wal.inline_commits > 0 and wal.thread_commits > 0, (wal.inline_commits, wal.thread_commits)
    # The loop blocked for a slow fsync at most once (the commit that measured it), then the thread took over.
    assert sum(1 for s in slow_stalls if s >= 0.045) <= 1, sorted(slow_stalls)[-5:]
    durable = [int(p) for _, p in recover(tmp_path / "wal.log")]
    assert handed_back == durable and sorted(durable) == sorted(set(durable)) and len(durable) == 180
    # Each appender's records stay in its own order, across the switches.
    for first in (0, 100, 200, 1000, 1100, 1200, 2000, 2100, 2200):
        mine = [i for i in durable if first <= i < first + 20]
        assert mine == list(range(first, first + 20))


def test_each_durable_batch_reports_its_write_and_fsync_time_on_the_loop(tmp_path: Path):
    """``on_synced`` times the syscalls alone (a slow fsync shows in full, as the fsync), once per batch, on the
    loop thread, with the batch's hand-back wait."""

    def slow_fsync(fd: int) -> None:
        time.sleep(0.03)

    async def main() -> tuple[list, set, int]:
        loop = asyncio.get_running_loop()
        synced: list[tuple[float, float, float, float]] = []
        threads: set[int] = set()

        def on_synced(batch, handback_s: float) -> None:
            synced.append((batch.sync_s, batch.write_s, batch.fsync_s, handback_s))
            threads.add(threading.get_ident())

        with mock.patch("matchlab.shard.wal.os.fsync", slow_fsync):
            wal = GroupCommitLog(JournalLayout(tmp_path, "wal.log"), 0, 0, loop, lambda *_: None, on_synced=on_synced)
            for i in range(3):
                await wal.append(1, str(i).encode())
            batches = wal.inline_commits + wal.thread_commits
            await wal.close()
        return synced, threads, batches

    synced, threads, batches = asyncio.run(main())
    assert len(synced) == batches == 3
    assert all(0.03 <= s < 1.0 and 0.03 <= f <= s and 0 <= w < 0.03 and 0 <= h < 1.0 for s, w, f, h in synced), synced
    assert threads == {threading.get_ident()}  # the loop's thread: the metric it feeds is written there only


def test_a_failed_batch_reports_no_sync_time(tmp_path: Path):
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        synced: list = []
        with mock.patch("matchlab.shard.wal.os.fsync", side_effect=OSError(5, "I/O error")):
            wal = GroupCommitLog(JournalLayout(tmp_path, "wal.log"), 0, 0, loop, lambda *_: None,
                                 on_synced=lambda batch, _: synced.append(batch))
            with pytest.raises(WalError):
                await wal.append(1, b"lost")
            await wal.close()
        return synced

    assert asyncio.run(main()) == []
