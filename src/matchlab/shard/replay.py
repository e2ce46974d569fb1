"""Replaying journal records: rebuilding books, id window and the events still owed.

Start-up restores the latest valid snapshot (books, id window, match counter
and delivery mark as of record ``cut``) and feeds every later record through
the same engine in journal order. With the in-process publisher, records
below ``cut`` but at or after the delivery mark are read for their events
only: those events were not confirmed delivered before the stop and are
published again. (With the relay the shard owes no event: the relay reads
the journal from its own mark.)
"""

from __future__ import annotations

from collections import deque

import orjson

from matchlab.shard.engine import MatchingEngine
from matchlab.shard.idwindow import IdWindow, fingerprint_entry
from matchlab.shard.orders import Order
from matchlab.shard.records import (
    ORDER_KINDS,
    REC_DELIVERED,
    REC_MATCH,
    REC_RESET,
    REC_SEED,
    decode_mark,
    decode_order_record,
    decode_seed,
    match_event,
    match_number,
    order_placed,
)
from matchlab.topology import TOPIC_MATCHES, TOPIC_ORDERS


class Replayer:
    """Feeds records in journal order; ``finish()`` says which events to publish again.

    ``cut`` and ``mark`` come from the snapshot (0 without one); so does
    ``last_match``, the highest match number whose record is known durable.
    ``owes_events``: whether events at or after the mark are collected to be
    published again (the in-process publisher; the relay owes its own).
    """

    def __init__(self, engine: MatchingEngine, ids: IdWindow, cut: int = 0, mark: int = 0, last_match: int = 0,
                 owes_events: bool = True) -> None:
        self.engine = engine
        self.ids = ids
        self.cut = cut
        self.mark = mark
        self.last_match = last_match
        self.owes_events = owes_events
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
        if index >= self.mark and self.owes_events and (kind == REC_MATCH or kind in ORDER_KINDS):
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
                    unjournaled.append((n, order.symbol.encode(), match_event(self.engine.match_id(n), order, fill, now_ms)))
        return undelivered, unjournaled
