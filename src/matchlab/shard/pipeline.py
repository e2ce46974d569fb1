"""From accepted request to match: journal -> ring buffer -> single matcher.

Every state change (order, seed, reset) is journaled first. When the group
commit covering it returns, the committer hands the batch back in append
order, and each entry joins the bounded ring buffer; one consumer task
drains the ring into the engine. So the matching order *is* the journal
order, which is what lets replay rebuild the books exactly (``recovery``).

Match records are journaled after matching: the journal is the single
source of events, and what the shard does about them besides is its events
mode's (``event_modes``: the relay process, or the in-process publisher).

The journal fails closed: a write that fails fails every entry of its group
(their requests get 503, nothing is matched or published), orders are refused
while it cannot write, and a retry task re-opens it once a probe write
succeeds. Every ``snapshot_every`` records the matcher captures a consistent
state between two entries, written once everything before it is durable
(``snapshots``); older segments are then compacted away.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from pathlib import Path
from time import perf_counter, time

from matchlab.errors import QueueFullError
from matchlab.shard.config import DEFAULT_SNAPSHOT_EVERY
from matchlab.shard.engine import MatchingEngine
from matchlab.shard.entries import Attachment, MatchEntry, OrderEntry, ResetEntry, RingEntry, SeedEntry
from matchlab.shard.event_modes import InProcessEvents, RelayedEvents
from matchlab.shard.handoff import DurableIndexWriter
from matchlab.shard.idwindow import IdWindow, ack_ms_of, fingerprint_entry, same_body
from matchlab.shard.journal import JournalLayout, resolve_journal
from matchlab.shard.metrics import ShardMetrics
from matchlab.shard.orders import Order
from matchlab.shard.records import (
    REC_DELIVERED,
    REC_MATCH,
    REC_ORDER,
    REC_RESET,
    REC_SEED,
    encode_mark,
    encode_order,
    encode_seed,
    match_event,
    order_record,
)
from matchlab.shard.recovery import recover_journal
from matchlab.shard.snapshots import Snapshotter
from matchlab.shard.wal import GroupCommitLog, JournalUnavailable, WalError

log = logging.getLogger(__name__)

# The matcher yields to the HTTP side after this many orders.
MATCH_CHUNK = 512
# How often a journal that could not write is tried again.
JOURNAL_RETRY_S = 0.5
DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024


class OrderConflict(ValueError):
    """The orderId was already acknowledged for a different order body."""


class OrderPipeline:
    """Owns the journal, the ring buffer, the id window and the matcher task of one shard."""

    def __init__(
        self,
        engine: MatchingEngine,
        metrics: ShardMetrics,
        events: RelayedEvents | InProcessEvents,
        capacity: int,
        *,
        ids: IdWindow | None = None,
        snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        match_delay_s: float = 0.0,
    ) -> None:
        self.engine = engine
        # Injected for comparisons only (INJECT_MATCH_DELAY_MS): durable entries wait this long before matching.
        self.match_delay_s = match_delay_s
        self._held: deque[list[RingEntry]] = deque()
        self.metrics = metrics
        self.events = events
        # Where "publishing" an event is the shard's part only, handing it to the journal for the relay, that
        # is what me_event_publish_duration_seconds times; the in-process producer times its own produce().
        self._handoff = None if events.in_process else metrics.publish
        self.capacity = capacity
        self.ids = ids if ids is not None else IdWindow(1_000_000, 600_000)
        self.snapshot_every = snapshot_every
        self.segment_bytes = segment_bytes
        self.ring: deque[RingEntry] = deque()
        self.in_flight = 0  # accepted, not yet matched (journal wait + ring)
        self._orders_in_flight = 0  # of which orders: their ids are the window's newest
        self.wal: GroupCommitLog | None = None
        self.layout: JournalLayout | None = None
        self.snapshots: Snapshotter | None = None
        self._durable_index: DurableIndexWriter | None = None
        self.next_index = 0  # the number the next appended record gets
        self.journal_ok = True
        self.journal_error = ""
        self._unjournaled: list[tuple[int, bytes, bytes]] = []  # (match n, key, event) awaiting a writable journal
        self._applied_through = 0  # every order, seed and reset below this index is in the books
        self.last_snapshot_cut = 0
        self._recovery_task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task | None = None

    # -- lifecycle ---------------------------------------------------------

    async def start(self, wal_path: Path, fsync: bool) -> int:
        """Restore the latest snapshot, replay the journal after it, open it for appends; return records replayed."""
        self.layout = layout = resolve_journal(wal_path)
        recovered = recover_journal(layout, self.engine, self.ids, self.events.owes_events, int(time() * 1000))
        self.next_index = self._applied_through = recovered.next_index
        self.last_snapshot_cut = recovered.cut
        loop = asyncio.get_running_loop()
        self._durable_index = DurableIndexWriter(layout)
        self.wal = wal = GroupCommitLog(
            layout, recovered.segment_first, recovered.next_index, loop, self._on_durable, self._on_failed,
            fsync=fsync, segment_bytes=self.segment_bytes, on_synced=self.metrics.observe_commit,
            on_durable_index=self._durable_index.store,
        )
        self.snapshots = Snapshotter(layout, wal, self.metrics.snapshot_capture.observe)
        self.metrics.bind_commits(lambda: {"inline": wal.inline_commits, "thread": wal.thread_commits})
        self._task = loop.create_task(self._match_forever(), name="matcher")
        self.events.start(self, recovered)
        # Matches whose order was durable but whose own record was torn off:
        # journal them now so their events still go out.
        for n, key, event in recovered.unjournaled:
            self._journal_match(n, key, event)
        return recovered.fed

    async def drain(self) -> None:
        """Wait until every accepted entry has been matched and its match records journaled."""
        while self.in_flight or self.ring:
            self._idle.clear()
            await self._idle.wait()
        if self.wal is not None:
            await self.wal.sync()

    async def close(self) -> None:
        """Drain, close the events mode (the in-process one journals its final mark), snapshot, close the journal.

        With the in-process publisher, flush it (``events.flush``) between ``drain()`` and ``close()`` so the
        mark covers every event delivered and a clean restart re-sends nothing. A journal that cannot write is
        closed as it is: what was acknowledged is on disk already.
        """
        try:
            await self.drain()
        except WalError:
            pass
        for task in (self._task, self._recovery_task):
            if task is not None:
                task.cancel()
        if self.snapshots is not None:
            await self.snapshots.wait()
        if self.wal is None:
            return
        self.events.close()
        if self.can_journal:
            if self._applied_through > self.last_snapshot_cut:  # a restart then replays (almost) nothing
                self._start_snapshot()
            await self.snapshots.wait()
        await self.wal.close()
        self._durable_index.close()

    async def abandon(self) -> None:
        """What a kill -9 leaves once everything is durable: the journal as it is, without a final delivery mark
        or a stop snapshot (tests and benchmarks of recovery)."""
        await self.drain()
        for task in (self._task, self._recovery_task):
            if task is not None:
                task.cancel()
        self.events.abandon()
        await self.snapshots.wait()
        await self.wal.close()
        self._durable_index.close()

    @property
    def can_journal(self) -> bool:
        """The journal writes, and no match waits to be journaled first."""
        return self.journal_ok and not self._unjournaled

    def append_record(self, kind: int, payload: bytes, attachment: Attachment | None = None,
                      lazy: bool = True) -> asyncio.Future:
        """Every journal append goes through here, so record numbers follow the file.

        ``lazy``: nobody waits on this record (a match, a mark), so it shares the next order's fsync.
        """
        future = self.wal.append(kind, payload, attachment, lazy)
        self.next_index += 1
        return future

    # -- the request side ----------------------------------------------------

    async def submit_order(self, order: Order, received_at: float) -> tuple[int, bool]:
        """Journal an order; return (ack time in epoch ms, whether it repeats an acknowledged one).

        Returns once the order is durable and queued. A repeat of an
        acknowledged orderId returns the original ack time and is not
        journaled again; a different body under that id raises OrderConflict.
        """
        if self.events.full:  # the in-process publisher's bounded outbox: wait for the broker (event_modes)
            await self.events.room()
        encoded = encode_order(order)
        known = self.ids.get(order.orderId)
        if known is not None:
            return await self._repeat(order.orderId, encoded, known)
        if not self.journal_ok:
            raise JournalUnavailable(None, f"journal cannot write ({self.journal_error}); orders are refused until it can")
        if self.in_flight >= self.capacity:
            raise QueueFullError(f"matching queue full ({self.in_flight}/{self.capacity} orders in flight)")
        ack_ms = int(time() * 1000)
        index = self.next_index
        future = self.append_record(REC_ORDER, order_record(encoded, ack_ms),
                                    OrderEntry(order, received_at, perf_counter(), index), lazy=False)
        self.events.held(index)
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
        applied = self._applied_future()
        await self._submit_and_apply(REC_SEED, encode_seed(orders), SeedEntry(orders, applied, self.next_index))

    async def submit_reset(self) -> None:
        """Journal a reset (empty every book and the id window) and wait until it is applied."""
        applied = self._applied_future()
        await self._submit_and_apply(REC_RESET, b"", ResetEntry(applied, self.next_index))

    @staticmethod
    def _applied_future() -> asyncio.Future:
        return asyncio.get_running_loop().create_future()

    async def _submit_and_apply(self, kind: int, payload: bytes, entry: SeedEntry | ResetEntry) -> None:
        if not self.journal_ok:
            raise JournalUnavailable(None, f"journal cannot write ({self.journal_error})")
        future = self.append_record(kind, payload, entry, lazy=False)
        if kind == REC_RESET:
            # Cleared when journaled, like replay does at the record: ids of orders journaled after it stay.
            self.ids.clear()
        self.in_flight += 1
        await future
        await entry.applied

    def utilization(self) -> float:
        return min(1.0, self.in_flight / self.capacity)

    # -- the journal's outcomes ------------------------------------------------

    def _on_durable(self, attachments: list[Attachment], durable_at: float) -> None:
        wal_hist = self.metrics.wal_append
        # While any group is held (the delay was on), later ones queue behind it: journal order holds.
        holding = bool(self.match_delay_s or self._held)
        ring = self.ring if not holding else []
        match_durable = self.events.match_durable
        for entry in attachments:
            kind = type(entry)
            if kind is MatchEntry:
                match_durable(entry)
                continue
            if kind is OrderEntry:
                wal_hist.observe(durable_at - entry.appended_at)
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

    def _hold(self, entries: list[RingEntry]) -> None:
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

    def _on_failed(self, attachments: list[Attachment], error: WalError) -> None:
        """A group that did not become durable: nothing in it is matched, published or remembered."""
        if not isinstance(error, JournalUnavailable):
            self.metrics.journal_errors.inc()
        if self.journal_ok:
            self.journal_ok = False
            self.journal_error = error.strerror or str(error)
            log.error("journal cannot write (%s): refusing orders until it can", self.journal_error)
            self._recovery_task = asyncio.get_running_loop().create_task(self._recover_journal(), name="journal-retry")
        dropped = self.events.dropped
        for entry in attachments:
            dropped(entry.index)
            kind = type(entry)
            if kind is MatchEntry:
                self._unjournaled.append((entry.n, entry.key, entry.event))
            elif kind is OrderEntry:
                self.in_flight -= 1
                self._orders_in_flight -= 1
                self.ids.forget(entry.order.orderId)
            else:
                self.in_flight -= 1
                if not entry.applied.done():
                    entry.applied.set_exception(error)
        if not self.in_flight:
            self._idle.set()

    async def _recover_journal(self) -> None:
        """Retry until a probe write succeeds; then journal the matches that waited, and accept orders again."""
        while not self.journal_ok:
            await asyncio.sleep(JOURNAL_RETRY_S)
            if self.wal.pending_records:
                continue  # groups still in the committer: let them fail first
            # Numbering resumes at the first record that did not become durable.
            self.next_index = self.wal.reset()
            self.events.journal_reset(self.next_index)
            try:
                self._flush_unjournaled()
                self.append_record(REC_DELIVERED, encode_mark(self.events.probe_mark()), lazy=False)  # the probe
                await self.wal.sync()
            except WalError:
                continue
            self.journal_ok = True
            self._flush_unjournaled()
            log.info("journal writable again: accepting orders")

    def _flush_unjournaled(self) -> None:
        waiting, self._unjournaled = sorted(self._unjournaled), []
        for n, key, event in waiting:
            self._append_match(n, key, event, lazy=False)

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
        if self.next_index - self.last_snapshot_cut >= self.snapshot_every:
            self._start_snapshot()

    def _apply(self, entry: RingEntry) -> None:
        self.in_flight -= 1
        self._applied_through = entry.index + 1
        kind = type(entry)
        if kind is OrderEntry:
            self._orders_in_flight -= 1
            self._apply_order(entry.order, entry.received_at, entry.index)
            return
        if kind is SeedEntry:
            self.engine.seed(entry.orders)
        else:
            self.engine.reset()
        if not entry.applied.done():
            entry.applied.set_result(None)

    def _apply_order(self, order: Order, received_at: float, index: int) -> None:
        engine, m = self.engine, self.metrics
        fills: list = []
        first = engine.match_count
        engine.apply_order(order, fills)
        now_ms = int(time() * 1000)
        self.events.order_applied(index, order, now_ms)
        if fills:
            key, handoff, journal_match = order.symbol.encode(), self._handoff, self._journal_match
            for i, fill in enumerate(fills):
                n = first + i + 1
                t0 = perf_counter()
                journal_match(n, key, match_event(engine.match_id(n), order, fill, now_ms))
                if handoff is not None:
                    handoff.observe(perf_counter() - t0)
            m.matches.inc(len(fills))
        m.algorithm.observe(engine.last_algorithm_s)
        m.insertion.observe(engine.last_insertion_s)
        m.match_duration.observe(perf_counter() - received_at)

    def _journal_match(self, n: int, key: bytes, event: bytes) -> None:
        # The journal holds the event itself: the relay (or, once durable, the in-process publisher) sends it.
        if self.can_journal:
            self._append_match(n, key, event, lazy=True)
        else:  # kept in match order until the journal can write again
            self._unjournaled.append((n, key, event))

    def _append_match(self, n: int, key: bytes, event: bytes, lazy: bool) -> None:
        index = self.next_index
        self.append_record(REC_MATCH, event, MatchEntry(n, key, event, index), lazy=lazy)
        self.events.held(index)

    # -- snapshots ---------------------------------------------------------------

    def _start_snapshot(self) -> None:
        """Capture the state at this point between two entries, and write it once everything before is durable.

        Only when the cut is clean: no seed or reset in flight (their effect on
        the id window is applied when journaled) and no match waiting for the
        journal.
        """
        if (
            self.snapshots.busy or not self.can_journal or self.in_flight != self._orders_in_flight
        ):
            return
        cut = self._applied_through
        self.last_snapshot_cut = cut  # also the back-off if this one fails
        # Ids of orders after the cut are replayed: left out.
        self.snapshots.take(cut, self.events.delivery_mark(cut), self.engine, self.ids, self._orders_in_flight)

    @property
    def records_since_snapshot(self) -> int:
        return self.next_index - self.last_snapshot_cut

    async def snapshot_now(self) -> bool:
        """Take the snapshot that would otherwise fall due during the next load, now, and wait until it is written.

        A harness asks for it between capacity steps, so that no snapshot's capture or write lands inside one.
        False when the cut is not clean (a seed or reset in flight, a match waiting for the journal): try again
        once they are through."""
        await self.snapshots.wait()
        self._start_snapshot()
        if not self.snapshots.busy:
            return False
        await self.snapshots.wait()
        return True
