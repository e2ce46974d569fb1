"""From accepted request to match: journal -> ring buffer -> single matcher.

Every state change (order, seed, reset) is journaled first. When the group
commit covering it returns, the committer hands the batch back in append
order, and each entry joins the bounded ring buffer; one consumer task
drains the ring into the engine. So the matching order *is* the journal
order, which is what lets replay rebuild the books exactly.

Match records are journaled after matching; their events are published only
once those records are durable (docs/internals/design.md §3.3). The journal is also the
events' outbox (``outbox.py``): what was not confirmed delivered before a
crash is published again on restart.

The journal fails closed: a write that fails fails every entry of its group
(their requests get 503, nothing is matched or published), orders are refused
while it cannot write, and a retry task re-opens it once a probe write
succeeds. Every ``snapshot_every`` records the matcher captures a consistent
state between two entries and a task writes it once everything before it is
durable; older segments are then compacted away (``journal.py``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections import deque
from functools import partial
from pathlib import Path
from time import perf_counter, time

import msgspec

from matchlab.errors import QueueFullError
from matchlab.shard.config import DEFAULT_SNAPSHOT_EVERY
from matchlab.shard.engine import MatchingEngine
from matchlab.shard.idwindow import IdWindow, ack_ms_of, fingerprint_entry, same_body
from matchlab.shard.journal import (
    JournalCorruptError,
    JournalLayout,
    compact,
    read_snapshot,
    resolve_journal,
    write_snapshot,
)
from matchlab.shard.metrics import ShardMetrics
from matchlab.shard.orders import Order
from matchlab.shard.outbox import Outbox, encode_mark
from matchlab.shard.replay import (
    REC_DELIVERED,
    REC_MATCH,
    REC_ORDER,
    REC_RESET,
    REC_SEED,
    Replayer,
    encode_order,
    match_event,
    order_placed,
    order_record,
)
from matchlab.shard.wal import GroupCommitLog, JournalUnavailable, WalError, recover
from matchlab.topology import TOPIC_MATCHES, TOPIC_ORDERS

log = logging.getLogger(__name__)

__all__ = ["REC_DELIVERED", "REC_MATCH", "REC_ORDER", "REC_RESET", "REC_SEED", "OrderPipeline", "order_placed"]

# Ring entry kinds (first element of each attachment; the record's index is always the last).
OP_ORDER, OP_SEED, OP_RESET, OP_EVENT = 0, 1, 2, 3
# The matcher yields to the HTTP side after this many orders.
MATCH_CHUNK = 512
# How often the delivery mark is journaled: bounds the events re-sent after a crash.
MARK_INTERVAL_S = 1.0
# How often a journal that could not write is tried again.
JOURNAL_RETRY_S = 0.5

DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
# Two, so that a corrupt newest snapshot falls back to the previous one.
SNAPSHOTS_KEPT = 2
SNAPSHOT_VERSION = 1


class OrderConflict(ValueError):
    """The orderId was already acknowledged for a different order body."""


class Snapshot(msgspec.Struct, array_like=True):
    version: int
    cut: int
    match_count: int
    mark: int
    books: dict[str, tuple[list[tuple[int, list[list]]], list[tuple[int, list[list]]]]]
    ids: bytes


_decode_snapshot = msgspec.msgpack.Decoder(Snapshot).decode


class OrderPipeline:
    """Owns the journal, the ring buffer, the id window and the matcher task of one shard."""

    def __init__(
        self,
        engine: MatchingEngine,
        metrics: ShardMetrics,
        publisher,
        capacity: int,
        ids: IdWindow | None = None,
        snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        match_delay_s: float = 0.0,
    ) -> None:
        self.engine = engine
        # Injected for comparisons only (INJECT_MATCH_DELAY_MS): durable entries wait this long before matching.
        self.match_delay_s = match_delay_s
        self._held: deque[list[tuple]] = deque()
        self.metrics = metrics
        self.publisher = publisher
        self.capacity = capacity
        self.ids = ids if ids is not None else IdWindow(1_000_000, 600_000)
        self.snapshot_every = snapshot_every
        self.segment_bytes = segment_bytes
        self.ring: deque[tuple] = deque()
        self.in_flight = 0  # accepted, not yet matched (journal wait + ring)
        self._orders_in_flight = 0  # of which orders: their ids are the window's newest
        self.wal: GroupCommitLog | None = None
        self.layout: JournalLayout | None = None
        self.journal_ok = True
        self.journal_error = ""
        self._unjournaled: list[tuple[int, bytes, bytes]] = []  # (match n, key, event) awaiting a writable journal
        self._applied_through = 0  # every order, seed and reset below this index is in the books
        self.last_snapshot_cut = 0
        self._snapshot_task: asyncio.Task | None = None
        self._recovery_task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task | None = None
        self._marker: asyncio.Task | None = None
        self.outbox = Outbox(0)

    # -- lifecycle ---------------------------------------------------------

    async def start(self, wal_path: Path, fsync: bool) -> int:
        """Restore the latest snapshot, replay the journal after it, open it for appends; return records replayed."""
        self.layout = layout = resolve_journal(wal_path)
        layout.remove_temp_files()
        # Replay allocates millions of objects that all stay alive: collecting
        # cycles meanwhile would only rescan them (it can double the replay time).
        collecting = gc.isenabled()
        gc.disable()
        try:
            replayer = self._restore_snapshot(layout)
            segment_first, next_index = self._replay_segments(layout, replayer)
            undelivered, unjournaled = replayer.finish(int(time() * 1000))
        finally:
            if collecting:
                gc.enable()
        self.outbox = Outbox(next_index, replayer.mark)
        self._applied_through = next_index
        self.last_snapshot_cut = replayer.cut
        loop = asyncio.get_running_loop()
        self.wal = GroupCommitLog(
            layout, segment_first, next_index, loop, self._on_durable, self._on_failed,
            fsync=fsync, segment_bytes=self.segment_bytes, on_synced=self.metrics.wal_sync.observe,
        )
        self._task = loop.create_task(self._match_forever(), name="matcher")
        self._marker = loop.create_task(self._mark_forever(), name="delivery-mark")
        # Events not confirmed delivered before the last stop go out again.
        for index, topic, key, event in undelivered:
            self.outbox.hold(index)
            self._publish(index, topic, key, event)
        if undelivered:
            log.info("re-publishing %d events not confirmed delivered before the restart", len(undelivered))
        # Matches whose order was durable but whose own record was torn off:
        # journal them now so their events still go out.
        for n, key, event in unjournaled:
            self._journal_match(n, key, event)
        return replayer.fed

    def _restore_snapshot(self, layout: JournalLayout) -> Replayer:
        """A replayer positioned after the newest valid snapshot (or at the journal's start)."""
        for cut, path in reversed(layout.snapshots()):
            payload = read_snapshot(path)
            try:
                snap = _decode_snapshot(payload) if payload is not None else None
            except msgspec.DecodeError:
                snap = None
            if snap is None or snap.version != SNAPSHOT_VERSION or snap.cut != cut:
                log.error("snapshot %s is torn or corrupt; falling back to the previous one", path)
                continue
            self.engine.load_books({s: b for s, b in snap.books.items() if s in self.engine.books})
            self.engine.match_count = snap.match_count
            self.ids.restore(snap.ids)
            log.info("restored snapshot %s (record %d, %d ids in the window)", path.name, cut, len(self.ids))
            return Replayer(self.engine, self.ids, cut, snap.mark, snap.match_count)
        return Replayer(self.engine, self.ids)

    def _replay_segments(self, layout: JournalLayout, replayer: Replayer) -> tuple[int, int]:
        """Feed every segment the replay needs; return (the last segment's first index, the next index)."""
        start = min(replayer.cut, replayer.mark)
        segments = layout.segments()
        if not segments:
            return replayer.cut, replayer.cut
        if segments[0][0] > start:
            raise JournalCorruptError(
                f"journal {layout.directory}: records from {start} are needed but the oldest segment starts at "
                f"{segments[0][0]} ({segments[0][1].name}) and no older snapshot is valid"
            )
        first = next_index = segments[0][0]
        for position, (first, path) in enumerate(segments):
            following = segments[position + 1][0] if position + 1 < len(segments) else None
            if following is not None and following <= start:
                next_index = following
                continue  # wholly before what the replay needs
            if first != next_index:
                raise JournalCorruptError(f"journal {layout.directory}: segment {path.name} starts at record {first}, expected {next_index}")
            skip = max(0, start - first)  # below the snapshot and the delivery mark: not needed
            records = recover(path, skip)
            feed, base = replayer.feed, first + skip
            for offset, (kind, payload) in enumerate(records):
                feed(base + offset, kind, payload)
            next_index = base + len(records)
            if following is not None and following != next_index:
                raise JournalCorruptError(
                    f"journal {layout.directory}: segment {path.name} ends at record {next_index} "
                    f"but the next one starts at {following}"
                )
        return first, next_index

    async def drain(self) -> None:
        """Wait until every accepted entry has been matched and its match records handed to the publisher."""
        while self.in_flight or self.ring:
            self._idle.clear()
            await self._idle.wait()
        if self.wal is not None:
            await self.wal.sync()

    async def close(self) -> None:
        """Drain, journal the final delivery mark and a snapshot, close the journal.

        Flush the publisher between ``drain()`` and ``close()`` so the mark
        covers every event delivered, and a clean restart re-sends nothing.
        A journal that cannot write is closed as it is: what was acknowledged
        is on disk already.
        """
        try:
            await self.drain()
        except WalError:
            pass
        for task in (self._task, self._marker, self._recovery_task):
            if task is not None:
                task.cancel()
        if self._snapshot_task is not None:
            await asyncio.gather(self._snapshot_task, return_exceptions=True)
        if self.wal is None:
            return
        if self.journal_ok and not self._unjournaled:
            self._journal_mark()
            if self._applied_through > self.last_snapshot_cut:  # a restart then replays (almost) nothing
                self._start_snapshot()
            if self._snapshot_task is not None:
                await asyncio.gather(self._snapshot_task, return_exceptions=True)
        await self.wal.close()

    async def _mark_forever(self) -> None:
        while True:
            await asyncio.sleep(MARK_INTERVAL_S)
            if self.journal_ok:
                self._journal_mark()

    def _journal_mark(self) -> None:
        mark = self.outbox.new_mark()
        if mark is not None:
            self.outbox.last_mark = mark
            self._append(REC_DELIVERED, encode_mark(mark), None, lazy=True)

    def _append(self, kind: int, payload: bytes, attachment, lazy: bool = False) -> asyncio.Future:
        """Every journal append goes through here, so record indices follow the file.

        ``lazy``: nobody waits on this record (a match, a mark), so it shares the next order's fsync.
        """
        future = self.wal.append(kind, payload, attachment, lazy)
        self.outbox.take_index()
        return future

    def _append_event(self, kind: int, payload: bytes, attachment: tuple, lazy: bool = False) -> asyncio.Future:
        """Append a record that yields an event: its index ends the attachment, and it is pending until confirmed."""
        index = self.outbox.next_index
        future = self._append(kind, payload, (*attachment, index), lazy)
        self.outbox.hold(index)
        return future

    def _publish(self, index: int, topic: str, key: bytes, event: bytes) -> None:
        self.publisher.publish(topic, key, event, partial(self.outbox.delivered, index))

    # -- the request side ----------------------------------------------------

    async def submit_order(self, order: Order, received_at: float) -> tuple[int, bool]:
        """Journal an order; return (ack time in epoch ms, whether it repeats an acknowledged one).

        Returns once the order is durable and queued. A repeat of an
        acknowledged orderId returns the original ack time and is not
        journaled again; a different body under that id raises OrderConflict.
        """
        encoded = encode_order(order)
        known = self.ids.get(order.orderId)
        if known is not None:
            return await self._repeat(order.orderId, encoded, known)
        if not self.journal_ok:
            raise JournalUnavailable(None, f"journal cannot write ({self.journal_error}); orders are refused until it can")
        if self.in_flight >= self.capacity:
            raise QueueFullError(f"matching queue full ({self.in_flight}/{self.capacity} orders in flight)")
        ack_ms = int(time() * 1000)
        future = self._append_event(
            REC_ORDER, order_record(encoded, ack_ms), (OP_ORDER, order, received_at, perf_counter())
        )
        self.ids.add(order.orderId, fingerprint_entry(encoded, ack_ms), ack_ms)
        self.in_flight += 1
        self._orders_in_flight += 1
        self.metrics.received[order.side].inc()
        await future
        return ack_ms, False

    async def _repeat(self, order_id: str, encoded: bytes, known: bytes) -> tuple[int, bool]:
        if not same_body(known, fingerprint_entry(encoded, 0)):
            raise OrderConflict(f"orderId: {order_id!r} was already accepted with a different order")
        try:
            await self.wal.sync()  # the original may still be on its way to disk
        except WalError:
            pass
        if self.ids.get(order_id) is not known:  # the original's write failed: it was never acknowledged
            raise JournalUnavailable(None, f"journal cannot write ({self.journal_error})")
        self.metrics.duplicates.inc()
        return ack_ms_of(known), True

    async def submit_seed(self, orders: list[Order]) -> None:
        """Journal a seed and wait until it is applied to the books."""
        await self._submit_and_apply(REC_SEED, encode_seed(orders), OP_SEED, orders)

    async def submit_reset(self) -> None:
        """Journal a reset (empty every book and the id window) and wait until it is applied."""
        await self._submit_and_apply(REC_RESET, b"", OP_RESET, None)
        # Cleared when journaled, like replay does at the record: ids of orders
        # journaled after the reset stay.

    async def _submit_and_apply(self, rec: int, payload: bytes, op: int, data) -> None:
        if not self.journal_ok:
            raise JournalUnavailable(None, f"journal cannot write ({self.journal_error})")
        applied = asyncio.get_running_loop().create_future()
        index = self.outbox.next_index
        future = self._append(rec, payload, (op, data, applied, index))
        if rec == REC_RESET:
            self.ids.clear()
        self.in_flight += 1
        await future
        await applied

    def utilization(self) -> float:
        return min(1.0, self.in_flight / self.capacity)

    # -- the journal's outcomes ------------------------------------------------

    def _on_durable(self, attachments: list[tuple], durable_at: float) -> None:
        wal_hist = self.metrics.wal_append
        # While any group is held (the delay was on), later ones queue behind it: journal order holds.
        holding = bool(self.match_delay_s or self._held)
        ring = self.ring if not holding else []
        for entry in attachments:
            op = entry[0]
            if op == OP_EVENT:
                self._publish(entry[4], TOPIC_MATCHES, entry[1], entry[2])
                continue
            if op == OP_ORDER:
                wal_hist.observe(durable_at - entry[3])
            ring.append(entry)
        if holding:
            if ring:
                self._hold(ring)
            return
        self._match_ring()

    def _match_ring(self) -> None:
        ring = self.ring
        if ring:
            # Matched right here, not after a wake-up of the matcher task: one
            # loop iteration less per group. The task takes over what one chunk leaves.
            self._match_chunk()
            if ring:
                self._wake.set()
            elif not self.in_flight:
                self._idle.set()

    def _hold(self, entries: list[tuple]) -> None:
        """The injected delay: a durable group joins the ring ``match_delay_s`` later, the loop free meanwhile.

        One timer per group, and each timer releases the *oldest* held group: the journal order
        is kept whichever way timers with equal deadlines fire. The held entries count as in
        flight, so ``drain()`` waits for them and back-pressure sees them.
        """
        self._held.append(entries)
        asyncio.get_running_loop().call_later(self.match_delay_s, self._release_held)

    def _release_held(self) -> None:
        if self._held:
            self.ring.extend(self._held.popleft())
            self._match_ring()

    def _on_failed(self, attachments: list[tuple], error: WalError) -> None:
        """A group that did not become durable: nothing in it is matched, published or remembered."""
        if not isinstance(error, JournalUnavailable):
            self.metrics.journal_errors.inc()
        if self.journal_ok:
            self.journal_ok = False
            self.journal_error = error.strerror or str(error)
            log.error("journal cannot write (%s): refusing orders until it can", self.journal_error)
            self._recovery_task = asyncio.get_running_loop().create_task(self._recover_journal(), name="journal-retry")
        outbox = self.outbox
        for entry in attachments:
            op = entry[0]
            outbox.delivered(entry[-1])  # no longer pending: the record does not exist
            if op == OP_EVENT:
                self._unjournaled.append((entry[3], entry[1], entry[2]))
            elif op == OP_ORDER:
                self.in_flight -= 1
                self._orders_in_flight -= 1
                self.ids.forget(entry[1].orderId)
            else:
                self.in_flight -= 1
                if not entry[2].done():
                    entry[2].set_exception(error)
        if not self.in_flight:
            self._idle.set()

    async def _recover_journal(self) -> None:
        """Retry until a probe write succeeds; then journal the matches that waited, and accept orders again."""
        while not self.journal_ok:
            await asyncio.sleep(JOURNAL_RETRY_S)
            if self.wal.pending_records:
                continue  # groups still in the committer: let them fail first
            next_index = self.wal.reset()
            # Numbering resumes at the first record that did not become durable.
            self.outbox.next_index = next_index
            self.outbox.last_mark = min(self.outbox.last_mark, next_index)
            try:
                self._flush_unjournaled()
                self._append(REC_DELIVERED, encode_mark(self.outbox.last_mark), None)  # the probe
                await self.wal.sync()
            except WalError:
                continue
            self.journal_ok = True
            self._flush_unjournaled()
            log.info("journal writable again: accepting orders")

    def _flush_unjournaled(self) -> None:
        waiting, self._unjournaled = sorted(self._unjournaled), []
        for n, key, event in waiting:
            self._append_event(REC_MATCH, event, (OP_EVENT, key, event, n))

    # -- the matching side -----------------------------------------------------

    async def _match_forever(self) -> None:
        ring = self.ring
        while True:
            await self._wake.wait()
            self._wake.clear()
            while ring:
                self._match_chunk()
                if ring:
                    await asyncio.sleep(0)  # let requests in between chunks
            if not self.in_flight:
                self._idle.set()

    def _match_chunk(self) -> None:
        """Apply up to MATCH_CHUNK entries from the ring's head (in journal order, whoever calls)."""
        ring, apply = self.ring, self._apply
        for _ in range(min(len(ring), MATCH_CHUNK)):
            apply(ring.popleft())
        if self.outbox.next_index - self.last_snapshot_cut >= self.snapshot_every:
            self._start_snapshot()

    def _apply(self, entry: tuple) -> None:
        self.in_flight -= 1
        self._applied_through = entry[-1] + 1
        op = entry[0]
        if op == OP_ORDER:
            self._orders_in_flight -= 1
            self._apply_order(entry[1], entry[2], entry[4])
            return
        if op == OP_SEED:
            self.engine.seed(entry[1])
        else:
            self.engine.reset()
        if not entry[2].done():
            entry[2].set_result(None)

    def _apply_order(self, order: Order, received_at: float, index: int) -> None:
        engine, m = self.engine, self.metrics
        fills: list = []
        first = engine.match_count
        engine.apply_order(order, fills)
        now_ms = int(time() * 1000)
        key = order.symbol.encode()
        self._publish(index, TOPIC_ORDERS, key, order_placed(order, now_ms))
        for i, fill in enumerate(fills):
            n = first + i + 1
            self._journal_match(n, key, match_event(engine, order, fill, n, now_ms))
        if fills:
            m.matches.inc(len(fills))
        m.algorithm.observe(engine.last_algorithm_s)
        m.insertion.observe(engine.last_insertion_s)
        m.match_duration.observe(perf_counter() - received_at)

    def _journal_match(self, n: int, key: bytes, event: bytes) -> None:
        # The journal holds the event itself; it is published once durable.
        if self.journal_ok and not self._unjournaled:
            self._append_event(REC_MATCH, event, (OP_EVENT, key, event, n), lazy=True)
        else:  # kept in match order until the journal can write again
            self._unjournaled.append((n, key, event))

    # -- snapshots ---------------------------------------------------------------

    def _start_snapshot(self) -> None:
        """Capture the state at this point between two entries, and write it once everything before is durable.

        Only when the cut is clean: no seed or reset in flight (their effect on
        the id window is applied when journaled) and no match waiting for the
        journal.
        """
        if (
            self._snapshot_task is not None or not self.journal_ok or self._unjournaled
            or self.in_flight != self._orders_in_flight
        ):
            return
        cut = self._applied_through
        self.last_snapshot_cut = cut  # also the back-off if this one fails
        ids = self.ids.encode(exclude_newest=self._orders_in_flight)  # ids of orders after the cut are replayed
        payload = msgspec.msgpack.encode(
            Snapshot(SNAPSHOT_VERSION, cut, self.engine.match_count, self.outbox.last_mark, self.engine.export_books(), ids)
        )
        self.wal.request_rotation()
        self._snapshot_task = asyncio.get_running_loop().create_task(
            self._write_snapshot(cut, self.outbox.last_mark, payload), name="snapshot"
        )

    @property
    def records_since_snapshot(self) -> int:
        return self.outbox.next_index - self.last_snapshot_cut

    async def snapshot_now(self) -> bool:
        """Take the snapshot that would otherwise fall due during the next load, now, and wait until it is written.

        A capacity step lasts seconds, and a snapshot under a small CPU budget stalls the matcher for tenths of
        one: a harness asks for it between steps. False when the cut is not clean (a seed or reset in flight, a
        match waiting for the journal): try again once they are through."""
        if self._snapshot_task is not None:
            await asyncio.gather(self._snapshot_task, return_exceptions=True)
        self._start_snapshot()
        if self._snapshot_task is None:
            return False
        await asyncio.gather(self._snapshot_task, return_exceptions=True)
        return True

    async def _write_snapshot(self, cut: int, mark: int, payload: bytes) -> None:
        loop = asyncio.get_running_loop()
        try:
            # Every match of an order below the cut, and the mark, must be durable before the snapshot claims them.
            await self.wal.sync()
            started = perf_counter()
            path = await loop.run_in_executor(None, write_snapshot, self.layout, cut, mark, payload)
            freed = await loop.run_in_executor(None, compact, self.layout, SNAPSHOTS_KEPT)
            log.info(
                "snapshot %s written (%d bytes, %.3fs); compaction freed %d bytes",
                path.name, len(payload), perf_counter() - started, freed,
            )
        except OSError as exc:  # WalError included: the journal will be retried, the snapshot comes later
            log.error("snapshot at record %d not written: %s", cut, exc)
        finally:
            self._snapshot_task = None


def encode_seed(orders: list[Order]) -> bytes:
    return msgspec.msgpack.encode(orders)
