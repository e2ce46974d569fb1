"""How a shard's events leave it: through the relay (``EVENTS_MODE=relay``, the default) or in-process.

The pipeline journals every order and every match either way, and tells
the mode what happened to those records; the mode decides what the shard
itself does about events.

``RelayedEvents``: nothing. A separate process (``matchlab.relay``) tails the
journal and publishes, so the matching process holds no Kafka client and a
broker outage reaches only the relay. The shard only reads the relay's
delivery mark when it snapshots, so that compaction stays behind it.

``InProcessEvents``: the coupled design, kept so that comparisons can show
what the relay changes. The shard owns the producer: ORDER_PLACED is sent
when the order is matched, MATCH_EXECUTED once its record is durable, the
journal doubles as the outbox (``outbox``) and a delivery mark is journaled
every second, from which a restart publishes again. Its outbox is bounded
(``EVENTS_OUTBOX_BOUND``): past the bound a new order waits until the broker
has taken enough events (``room``), so a long enough broker outage stalls
matching, the coupling the relay removes.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import TYPE_CHECKING

from matchlab.shard.entries import MatchEntry
from matchlab.shard.handoff import read_relay_mark
from matchlab.shard.orders import Order
from matchlab.shard.outbox import Outbox
from matchlab.shard.records import REC_DELIVERED, encode_mark, order_placed
from matchlab.topology import TOPIC_MATCHES, TOPIC_ORDERS

if TYPE_CHECKING:
    from matchlab.shard.pipeline import OrderPipeline
    from matchlab.shard.recovery import Recovered

log = logging.getLogger(__name__)

# How often the in-process outbox journals its delivery mark: bounds the events re-sent after a crash.
MARK_INTERVAL_S = 1.0


class RelayedEvents:
    """The shard's side of the relay. ``relay``: False when no events are sent at all (no broker configured)."""

    in_process = False
    owes_events = False  # replay need not collect events: the relay reads the journal from its own mark
    full = False  # the journal holds the backlog: an order never waits for the broker

    def __init__(self, relay: bool = True) -> None:
        self.relay = relay
        self._pipeline: OrderPipeline | None = None

    def start(self, pipeline: OrderPipeline, recovered: Recovered) -> None:
        self._pipeline = pipeline

    async def room(self) -> None:
        pass

    def held(self, index: int) -> None:
        pass

    def order_applied(self, index: int, order: Order, now_ms: int) -> None:
        pass

    def match_durable(self, entry: MatchEntry) -> None:
        pass

    def dropped(self, index: int) -> None:
        pass

    def journal_reset(self, next_index: int) -> None:
        pass

    def probe_mark(self) -> int:
        return 0  # a delivery mark of 0 claims nothing: replay keeps the highest it has seen

    def delivery_mark(self, cut: int) -> int:
        """Where events may still be owed, for a snapshot at ``cut``: the relay's mark (0 before it wrote one)."""
        if not self.relay:
            return cut
        mark = read_relay_mark(self._pipeline.layout)
        return 0 if mark is None else mark

    async def flush(self, timeout_s: float) -> int:
        return 0

    def close(self) -> None:
        pass

    def abandon(self) -> None:
        pass

    def stats(self) -> dict:
        """Records the relay has not confirmed as of its last mark (0 once it has caught up; seeds count too)."""
        pipeline = self._pipeline
        mark = self.delivery_mark(pipeline.next_index) if pipeline is not None else 0
        awaiting = max(0, pipeline.next_index - mark) if pipeline is not None else 0
        return {"eventsMode": "relay", "eventsPending": awaiting, "deliveryMark": mark}


class InProcessEvents:
    """The shard's own producer (``events.EventPublisher`` or a stand-in with ``publish``, ``start``, ``close``)."""

    in_process = True
    owes_events = True

    def __init__(self, publisher, bound: int = 0) -> None:
        self.publisher = publisher
        self.bound = bound  # events awaiting the broker past which orders wait (0: unbounded)
        self.outbox = Outbox(0)
        self._room = asyncio.Event()  # set by a delivery that brings the outbox below its bound
        self._waiting = 0  # orders waiting for room
        self._pipeline: OrderPipeline | None = None
        self._marker: asyncio.Task | None = None

    def start(self, pipeline: OrderPipeline, recovered: Recovered) -> None:
        self._pipeline = pipeline
        self.outbox = Outbox(recovered.next_index, recovered.mark)
        self.publisher.start()
        self._marker = asyncio.get_running_loop().create_task(self._mark_forever(), name="delivery-mark")
        # Events not confirmed delivered before the last stop go out again.
        for index, topic, key, event in recovered.undelivered:
            self.outbox.hold(index)
            self._publish(index, topic, key, event)
        if recovered.undelivered:
            log.info("re-publishing %d events not confirmed delivered before the restart", len(recovered.undelivered))

    def _publish(self, index: int, topic: str, key: bytes, event: bytes) -> None:
        self.publisher.publish(topic, key, event, partial(self._delivered, index))

    def _delivered(self, index: int) -> None:
        self.outbox.delivered(index)
        if self._waiting and not self.full:
            self._room.set()

    @property
    def full(self) -> bool:
        return bool(self.bound) and self.outbox.pending >= self.bound

    async def room(self) -> None:
        """Wait until the outbox is below its bound: the broker has confirmed enough events (its delivery
        reports, served by the publisher's poll timer, wake the waiters; none of them polls)."""
        self._waiting += 1
        try:
            while self.full:
                self._room.clear()
                await self._room.wait()
        finally:
            self._waiting -= 1

    def held(self, index: int) -> None:
        self.outbox.hold(index)

    def order_applied(self, index: int, order: Order, now_ms: int) -> None:
        self._publish(index, TOPIC_ORDERS, order.symbol.encode(), order_placed(order, now_ms))

    def match_durable(self, entry: MatchEntry) -> None:
        self._publish(entry.index, TOPIC_MATCHES, entry.key, entry.event)

    def dropped(self, index: int) -> None:
        self._delivered(index)  # no longer pending: the record does not exist

    def journal_reset(self, next_index: int) -> None:
        self.outbox.last_mark = min(self.outbox.last_mark, next_index)

    def probe_mark(self) -> int:
        return self.outbox.last_mark

    def delivery_mark(self, cut: int) -> int:
        return self.outbox.last_mark

    async def _mark_forever(self) -> None:
        while True:
            await asyncio.sleep(MARK_INTERVAL_S)
            if self._pipeline.journal_ok:
                self.journal_mark()

    def journal_mark(self) -> None:
        """Journal the delivery mark if it covers an event the last one did not."""
        outbox = self.outbox
        outbox.next_index = self._pipeline.next_index
        mark = outbox.new_mark()
        if mark is not None:
            outbox.last_mark = mark
            self._pipeline.append_record(REC_DELIVERED, encode_mark(mark))

    async def flush(self, timeout_s: float) -> int:
        """Flush the producer (at most ``timeout_s``); return how many events stayed undelivered."""
        return await self.publisher.close(timeout_s)

    def abandon(self) -> None:
        """Stop journaling marks, journal none (a crash)."""
        if self._marker is not None:
            self._marker.cancel()

    def close(self) -> None:
        """After ``flush``: journal the final mark, so that a clean restart re-sends nothing."""
        self.abandon()
        if self._pipeline is not None and self._pipeline.can_journal:
            self.journal_mark()

    def stats(self) -> dict:
        return {"eventsMode": "inprocess", "eventsPending": self.outbox.pending, "deliveryMark": self.outbox.last_mark}
