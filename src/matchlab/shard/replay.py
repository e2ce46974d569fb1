"""Journal records and their replay: rebuilding books, id window and pending events.

Start-up restores the latest valid snapshot (books, id window, match counter
and delivery mark as of record ``cut``) and feeds every later record through
the same engine in journal order. Records below ``cut`` but at or after the
delivery mark are read for their events only: those events were not
confirmed delivered before the stop and are published again.
"""

from __future__ import annotations

import struct
from collections import deque

import msgspec
import orjson

from matchlab.shard.engine import MatchingEngine
from matchlab.shard.idwindow import IdWindow, fingerprint_entry
from matchlab.shard.orders import Order
from matchlab.shard.outbox import decode_mark
from matchlab.topology import TOPIC_MATCHES, TOPIC_ORDERS

# Journal record kinds. REC_ORDER_V1 (an order without its ack time) is only read, from older journals.
REC_ORDER_V1, REC_SEED, REC_MATCH, REC_RESET, REC_DELIVERED, REC_ORDER = 1, 2, 3, 4, 5, 6
ORDER_KINDS = (REC_ORDER, REC_ORDER_V1)

_ACK_MS = struct.Struct("<q")
_encode = msgspec.msgpack.Encoder().encode
_decode_order = msgspec.msgpack.Decoder(Order).decode
decode_seed = msgspec.msgpack.Decoder(list[Order]).decode
_MATCH_ID = b'"matchId":"'


def encode_order(order: Order) -> bytes:
    return _encode(order)


def order_record(encoded_order: bytes, ack_ms: int) -> bytes:
    """An order record's payload: the acknowledgement's time, then the order."""
    return _ACK_MS.pack(ack_ms) + encoded_order


def decode_order_record(kind: int, payload: bytes) -> tuple[int, memoryview | bytes, Order]:
    """(ack ms, the order's encoding, the order); older records carry no ack time (0)."""
    if kind == REC_ORDER_V1:
        return 0, payload, _decode_order(payload)
    encoded = memoryview(payload)[_ACK_MS.size:]
    return _ACK_MS.unpack_from(payload)[0], encoded, _decode_order(encoded)


def match_number(payload: bytes) -> int:
    """n of the ``"<shard>-<n>"`` matchId in a match record, without parsing the whole event."""
    start = payload.index(_MATCH_ID) + len(_MATCH_ID)
    end = payload.index(b'"', start)
    return int(payload[payload.rindex(b"-", start, end) + 1:end])


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


def match_event(engine: MatchingEngine, order: Order, fill: tuple, n: int, now_ms: int) -> bytes:
    maker_id, price, qty = fill
    return orjson.dumps(
        {
            "type": "MATCH_EXECUTED",
            "matchId": engine.match_id(n),
            "takerOrderId": order.orderId,
            "makerOrderId": maker_id,
            "symbol": order.symbol,
            "executionPrice": price,
            "executionQuantity": qty,
            "takerSide": order.side,
            "timestamp": now_ms,
        }
    )


class Replayer:
    """Feeds records in journal order; ``finish()`` says which events to publish again.

    ``cut`` and ``mark`` come from the snapshot (0 without one); so does
    ``last_match``, the highest match number whose record is known durable.
    """

    def __init__(self, engine: MatchingEngine, ids: IdWindow, cut: int = 0, mark: int = 0, last_match: int = 0) -> None:
        self.engine = engine
        self.ids = ids
        self.cut = cut
        self.mark = mark
        self.last_match = last_match
        self.fed = 0
        self._undelivered: deque[tuple[int, int, bytes]] = deque()  # (index, kind, payload) at/after the mark
        self._unconfirmed: deque[tuple[Order, list, int]] = deque()  # (order, fills, first match number)

    def feed(self, index: int, kind: int, payload: bytes) -> None:
        self.fed += 1
        if kind == REC_DELIVERED:
            mark = decode_mark(payload)
            if mark > self.mark:
                self.mark = mark
                pending = self._undelivered
                while pending and pending[0][0] < mark:
                    pending.popleft()
            return
        if index >= self.mark and (kind == REC_MATCH or kind in ORDER_KINDS):
            self._undelivered.append((index, kind, payload))
        if index < self.cut:
            return  # already in the snapshot's state
        engine = self.engine
        if kind in ORDER_KINDS:
            ack_ms, encoded, order = decode_order_record(kind, payload)
            fills: list = []
            first = engine.match_count + 1
            engine.apply_order(order, fills)
            self.ids.add(order.orderId, fingerprint_entry(encoded, ack_ms), ack_ms)
            if fills:
                self._unconfirmed.append((order, fills, first))
        elif kind == REC_MATCH:
            n = match_number(payload)
            if n > self.last_match:
                self.last_match = n
                unconfirmed = self._unconfirmed
                while unconfirmed and unconfirmed[0][2] + len(unconfirmed[0][1]) - 1 <= n:
                    unconfirmed.popleft()
        elif kind == REC_SEED:
            engine.seed(decode_seed(payload))
        elif kind == REC_RESET:
            engine.reset()
            self.ids.clear()

    def finish(self, now_ms: int) -> tuple[list[tuple[int, str, bytes, bytes]], list[tuple[int, bytes, bytes]]]:
        """(events at or after the mark as (index, topic, key, event); matches never journaled as (n, key, event)).

        Events rebuilt here carry the replay's time.
        """
        undelivered = []
        for index, kind, payload in self._undelivered:
            if kind == REC_MATCH:
                undelivered.append((index, TOPIC_MATCHES, orjson.loads(payload)["symbol"].encode(), payload))
            else:
                order = decode_order_record(kind, payload)[2]
                undelivered.append((index, TOPIC_ORDERS, order.symbol.encode(), order_placed(order, now_ms)))
        unjournaled = []
        for order, fills, first in self._unconfirmed:
            for i, fill in enumerate(fills):
                n = first + i
                if n > self.last_match:
                    unjournaled.append((n, order.symbol.encode(), match_event(self.engine, order, fill, n, now_ms)))
        return undelivered, unjournaled
