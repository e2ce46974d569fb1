"""From accepted request to match: journal -> ring buffer -> single matcher.

Every state change (order, seed, reset) is journaled first. When the group
commit covering it returns, the committer hands the batch back in append
order, and each entry joins the bounded ring buffer; one consumer task
drains the ring into the engine. So the matching order *is* the journal
order, which is what lets replay rebuild the books exactly.

Match records are journaled after matching; their events are published only
once those records are durable (DESIGN.md §3.3). The journal is also the
events' outbox (``outbox.py``): what was not confirmed delivered before a
crash is published again on restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from functools import partial
from pathlib import Path
from time import perf_counter, time

import msgspec
import orjson

from matchlab.errors import QueueFullError
from matchlab.shard.engine import MatchingEngine
from matchlab.shard.events import TOPIC_MATCHES, TOPIC_ORDERS
from matchlab.shard.metrics import ShardMetrics
from matchlab.shard.orders import Order
from matchlab.shard.outbox import Outbox, decode_mark, encode_mark
from matchlab.shard.wal import GroupCommitLog, recover

log = logging.getLogger(__name__)

# Journal record kinds.
REC_ORDER, REC_SEED, REC_MATCH, REC_RESET, REC_DELIVERED = 1, 2, 3, 4, 5
# Ring entry kinds (first element of each attachment).
OP_ORDER, OP_SEED, OP_RESET, OP_EVENT = 0, 1, 2, 3
# The matcher yields to the HTTP side after this many orders.
MATCH_CHUNK = 512
# How often the delivery mark is journaled: bounds the events re-sent after a crash.
MARK_INTERVAL_S = 1.0

_encode = msgspec.msgpack.Encoder().encode
_decode_order = msgspec.msgpack.Decoder(Order).decode
_decode_seed = msgspec.msgpack.Decoder(list[Order]).decode


class OrderPipeline:
    """Owns the journal, the ring buffer and the matcher task of one shard."""

    def __init__(self, engine: MatchingEngine, metrics: ShardMetrics, publisher, capacity: int) -> None:
        self.engine = engine
        self.metrics = metrics
        self.publisher = publisher
        self.capacity = capacity
        self.ring: deque[tuple] = deque()
        self.in_flight = 0  # accepted, not yet matched (journal wait + ring)
        self.wal: GroupCommitLog | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task | None = None
        self._marker: asyncio.Task | None = None
        self.outbox = Outbox(0)

    # -- lifecycle ---------------------------------------------------------

    async def start(self, wal_path: Path, fsync: bool) -> int:
        """Replay the journal, then open it for appends; return records replayed."""
        wal_path.parent.mkdir(parents=True, exist_ok=True)
        records = recover(wal_path)
        mark = max((decode_mark(p) for kind, p in records if kind == REC_DELIVERED), default=0)
        self.outbox = Outbox(len(records), mark)
        undelivered, unjournaled = self._replay(records, mark)
        loop = asyncio.get_running_loop()
        self.wal = GroupCommitLog(wal_path, loop, self._on_durable, fsync=fsync)
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
        for key, event in unjournaled:
            self._journal_match(key, event)
        return len(records)

    def _replay(self, records: list[tuple[int, bytes]], mark: int = 0) -> tuple[list[tuple], list[tuple[bytes, bytes]]]:
        """Rebuild the books; return the events at or after ``mark`` and the matches never journaled."""
        engine = self.engine
        journaled = sum(1 for kind, _ in records if kind == REC_MATCH)
        undelivered: list[tuple[int, str, bytes, bytes]] = []
        unjournaled: list[tuple[bytes, bytes]] = []
        fills: list = []
        now_ms = int(time() * 1000)  # events rebuilt on replay carry the replay's time
        for index, (kind, payload) in enumerate(records):
            if kind == REC_ORDER:
                order = _decode_order(payload)
                fills.clear()
                first = engine.match_count
                engine.apply_order(order, fills)
                if index >= mark:
                    undelivered.append((index, TOPIC_ORDERS, order.symbol.encode(), order_placed(order, now_ms)))
                for i, fill in enumerate(fills):
                    if first + i >= journaled:
                        unjournaled.append((order.symbol.encode(), self._match_event(order, fill, first + i + 1, now_ms)))
            elif kind == REC_MATCH and index >= mark:
                undelivered.append((index, TOPIC_MATCHES, orjson.loads(payload)["symbol"].encode(), payload))
            elif kind == REC_SEED:
                engine.seed(_decode_seed(payload))
            elif kind == REC_RESET:
                engine.reset()
        return undelivered, unjournaled

    async def drain(self) -> None:
        """Wait until every accepted entry has been matched and its match records handed to the publisher."""
        while self.in_flight or self.ring:
            self._idle.clear()
            await self._idle.wait()
        if self.wal is not None:
            await self.wal.sync()

    async def close(self) -> None:
        """Drain, journal the final delivery mark, close the journal.

        Flush the publisher between ``drain()`` and ``close()`` so the mark
        covers every event delivered, and a clean restart re-sends nothing.
        """
        await self.drain()
        for task in (self._task, self._marker):
            if task is not None:
                task.cancel()
        if self.wal is not None:
            self._journal_mark()
            await self.wal.close()

    async def _mark_forever(self) -> None:
        while True:
            await asyncio.sleep(MARK_INTERVAL_S)
            self._journal_mark()

    def _journal_mark(self) -> None:
        mark = self.outbox.new_mark()
        if mark is not None:
            self.outbox.last_mark = mark
            self._append(REC_DELIVERED, encode_mark(mark), None)

    def _append(self, kind: int, payload: bytes, attachment) -> asyncio.Future:
        """Every journal append goes through here, so record indices follow the file."""
        future = self.wal.append(kind, payload, attachment)
        self.outbox.take_index()
        return future

    def _append_event(self, kind: int, payload: bytes, attachment: tuple) -> asyncio.Future:
        """Append a record that yields an event: its index ends the attachment, and it is pending until confirmed."""
        index = self.outbox.next_index
        future = self._append(kind, payload, (*attachment, index))
        self.outbox.hold(index)
        return future

    def _publish(self, index: int, topic: str, key: bytes, event: bytes) -> None:
        self.publisher.publish(topic, key, event, partial(self.outbox.delivered, index))

    # -- the request side ----------------------------------------------------

    def submit_order(self, order: Order, received_at: float) -> asyncio.Future:
        """Journal an order; the future resolves once it is durable and queued."""
        if self.in_flight >= self.capacity:
            raise QueueFullError(f"matching queue full ({self.in_flight}/{self.capacity} orders in flight)")
        future = self._append_event(REC_ORDER, _encode(order), (OP_ORDER, order, received_at, perf_counter()))
        self.in_flight += 1
        self.metrics.received[order.side].inc()
        return future

    async def submit_seed(self, orders: list[Order]) -> None:
        """Journal a seed and wait until it is applied to the books."""
        await self._submit_and_apply(REC_SEED, _encode(orders), OP_SEED, orders)

    async def submit_reset(self) -> None:
        """Journal a reset (empty every book) and wait until it is applied."""
        await self._submit_and_apply(REC_RESET, b"", OP_RESET, None)

    async def _submit_and_apply(self, rec: int, payload: bytes, op: int, data) -> None:
        applied = asyncio.get_running_loop().create_future()
        self.in_flight += 1
        await self._append(rec, payload, (op, data, applied))
        await applied

    def utilization(self) -> float:
        return min(1.0, self.in_flight / self.capacity)

    # -- the matching side -----------------------------------------------------

    def _on_durable(self, attachments: list[tuple], durable_at: float) -> None:
        wal_hist = self.metrics.wal_append
        ring = self.ring
        for entry in attachments:
            op = entry[0]
            if op == OP_EVENT:
                self._publish(entry[3], TOPIC_MATCHES, entry[1], entry[2])
                continue
            if op == OP_ORDER:
                wal_hist.observe(durable_at - entry[3])
            ring.append(entry)
        if ring:
            self._wake.set()

    async def _match_forever(self) -> None:
        ring = self.ring
        while True:
            await self._wake.wait()
            self._wake.clear()
            while ring:
                for _ in range(min(len(ring), MATCH_CHUNK)):
                    self._apply(ring.popleft())
                if ring:
                    await asyncio.sleep(0)  # let requests in between chunks
            if not self.in_flight:
                self._idle.set()

    def _apply(self, entry: tuple) -> None:
        self.in_flight -= 1
        op = entry[0]
        if op == OP_ORDER:
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
            self._journal_match(key, self._match_event(order, fill, first + i + 1, now_ms))
        if fills:
            m.matches.inc(len(fills))
        m.algorithm.observe(engine.last_algorithm_s)
        m.insertion.observe(engine.last_insertion_s)
        m.match_duration.observe(perf_counter() - received_at)

    def _match_event(self, order: Order, fill: tuple, n: int, now_ms: int) -> bytes:
        maker_id, price, qty = fill
        return orjson.dumps(
            {
                "type": "MATCH_EXECUTED",
                "matchId": self.engine.match_id(n),
                "takerOrderId": order.orderId,
                "makerOrderId": maker_id,
                "symbol": order.symbol,
                "executionPrice": price,
                "executionQuantity": qty,
                "takerSide": order.side,
                "timestamp": now_ms,
            }
        )

    def _journal_match(self, key: bytes, event: bytes) -> None:
        # The journal holds the event itself; it is published once durable.
        self._append_event(REC_MATCH, event, (OP_EVENT, key, event))


def order_placed(order: Order, now_ms: int) -> bytes:
    return orjson.dumps(
        {
            "type": "ORDER_PLACED",
            "orderId": order.orderId,
            "symbol": order.symbol,
            "side": order.side,
            "price": order.price,
            "quantity": order.quantity,
            "timestamp": now_ms,
        }
    )
