"""From accepted request to match: journal -> ring buffer -> single matcher.

Every state change (order, seed, reset) is journaled first. When the group
commit covering it returns, the committer hands the batch back in append
order, and each entry joins the bounded ring buffer; one consumer task
drains the ring into the engine. So the matching order *is* the journal
order, which is what lets replay rebuild the books exactly.

Match records are journaled after matching; their events are published only
once those records are durable (DESIGN.md §3.3).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from pathlib import Path
from time import perf_counter, time

import msgspec
import orjson

from matchlab.errors import QueueFullError
from matchlab.shard.engine import MatchingEngine
from matchlab.shard.events import TOPIC_MATCHES, TOPIC_ORDERS
from matchlab.shard.metrics import ShardMetrics
from matchlab.shard.orders import Order
from matchlab.shard.wal import GroupCommitLog, recover

log = logging.getLogger(__name__)

# Journal record kinds.
REC_ORDER, REC_SEED, REC_MATCH, REC_RESET = 1, 2, 3, 4
# Ring entry kinds (first element of each attachment).
OP_ORDER, OP_SEED, OP_RESET, OP_EVENT = 0, 1, 2, 3
# The matcher yields to the HTTP side after this many orders.
MATCH_CHUNK = 512

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

    # -- lifecycle ---------------------------------------------------------

    async def start(self, wal_path: Path, fsync: bool) -> int:
        """Replay the journal, then open it for appends; return records replayed."""
        wal_path.parent.mkdir(parents=True, exist_ok=True)
        records = recover(wal_path)
        unjournaled = self._replay(records)
        loop = asyncio.get_running_loop()
        self.wal = GroupCommitLog(wal_path, loop, self._on_durable, fsync=fsync)
        self._task = loop.create_task(self._match_forever(), name="matcher")
        # Matches whose order was durable but whose own record was torn off:
        # journal them now so their events still go out.
        for key, event in unjournaled:
            self._journal_match(key, event)
        return len(records)

    def _replay(self, records: list[tuple[int, bytes]]) -> list[tuple[bytes, bytes]]:
        engine = self.engine
        journaled = sum(1 for kind, _ in records if kind == REC_MATCH)
        unjournaled: list[tuple[bytes, bytes]] = []
        fills: list = []
        for kind, payload in records:
            if kind == REC_ORDER:
                order = _decode_order(payload)
                fills.clear()
                first = engine.match_count
                engine.apply_order(order, fills)
                for i, fill in enumerate(fills):
                    if first + i >= journaled:
                        event = self._match_event(order, fill, first + i + 1, int(time() * 1000))
                        unjournaled.append((order.symbol.encode(), event))
            elif kind == REC_SEED:
                engine.seed(_decode_seed(payload))
            elif kind == REC_RESET:
                engine.reset()
        return unjournaled

    async def drain(self) -> None:
        """Wait until every accepted entry has been matched."""
        while self.in_flight or self.ring:
            self._idle.clear()
            await self._idle.wait()

    async def close(self) -> None:
        await self.drain()
        if self._task is not None:
            self._task.cancel()
        if self.wal is not None:
            await self.wal.close()

    # -- the request side ----------------------------------------------------

    def submit_order(self, order: Order, received_at: float) -> asyncio.Future:
        """Journal an order; the future resolves once it is durable and queued."""
        if self.in_flight >= self.capacity:
            raise QueueFullError(f"matching queue full ({self.in_flight}/{self.capacity} orders in flight)")
        self.in_flight += 1
        self.metrics.received[order.side].inc()
        return self.wal.append(REC_ORDER, _encode(order), (OP_ORDER, order, received_at, perf_counter()))

    async def submit_seed(self, orders: list[Order]) -> None:
        """Journal a seed and wait until it is applied to the books."""
        await self._submit_and_apply(REC_SEED, _encode(orders), OP_SEED, orders)

    async def submit_reset(self) -> None:
        """Journal a reset (empty every book) and wait until it is applied."""
        await self._submit_and_apply(REC_RESET, b"", OP_RESET, None)

    async def _submit_and_apply(self, rec: int, payload: bytes, op: int, data) -> None:
        applied = asyncio.get_running_loop().create_future()
        self.in_flight += 1
        await self.wal.append(rec, payload, (op, data, applied))
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
                self.publisher.publish(TOPIC_MATCHES, entry[1], entry[2])
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
            self._apply_order(entry[1], entry[2])
            return
        if op == OP_SEED:
            self.engine.seed(entry[1])
        else:
            self.engine.reset()
        if not entry[2].done():
            entry[2].set_result(None)

    def _apply_order(self, order: Order, received_at: float) -> None:
        engine, m = self.engine, self.metrics
        fills: list = []
        first = engine.match_count
        engine.apply_order(order, fills)
        now_ms = int(time() * 1000)
        key = order.symbol.encode()
        self.publisher.publish(
            TOPIC_ORDERS,
            key,
            orjson.dumps(
                {
                    "type": "ORDER_PLACED",
                    "orderId": order.orderId,
                    "symbol": order.symbol,
                    "side": order.side,
                    "price": order.price,
                    "quantity": order.quantity,
                    "timestamp": now_ms,
                }
            ),
        )
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
        self.wal.append(REC_MATCH, event, (OP_EVENT, key, event))
