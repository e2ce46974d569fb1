"""Matching invariants over random order streams (hypothesis)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from matchlab.shard.engine import MatchingEngine
from matchlab.shard.idwindow import IdWindow
from matchlab.shard.orders import Order
from matchlab.shard.records import REC_ORDER, order_record
from matchlab.shard.replay import Replayer
from matchlab.shard.wal import encode_record, recover

SYM = "TEST-ASSET-A"
_encode = msgspec.msgpack.Encoder().encode

orders = st.lists(
    st.tuples(
        st.sampled_from(["BUY", "SELL"]),
        st.sampled_from(["LIMIT", "LIMIT", "LIMIT", "MARKET"]),
        st.integers(95, 105),
        st.integers(1, 50),
    ),
    min_size=1,
    max_size=200,
)


def stream(raw) -> list[Order]:
    return [
        Order(orderId=f"o{i}", symbol=SYM, side=side, type=kind, quantity=qty, price=price if kind == "LIMIT" else None)
        for i, (side, kind, price, qty) in enumerate(raw)
    ]


@settings(max_examples=300, deadline=None)
@given(orders)
def test_matching_invariants(raw):
    engine = MatchingEngine("a", frozenset([SYM]))
    book = engine.books[SYM]
    limits = {}
    rested = matched = 0
    for index, order in enumerate(stream(raw)):
        fills: list = []
        remaining = engine.apply_order(order, fills)
        filled = sum(q for _, _, q in fills)
        assert filled + remaining == order.quantity  # every unit accounted for
        matched += filled
        for maker, price, qty in fills:
            assert qty > 0
            assert price == limits[maker]  # executed at the maker's price
            if order.price is not None:  # and never through the taker's limit
                assert price <= order.price if order.side == "BUY" else price >= order.price
        if remaining and order.price is not None:
            rested += remaining
            limits[order.orderId] = order.price
        bid, ask = book.best_bid(), book.best_ask()
        assert bid is None or ask is None or bid < ask  # never left crossed
        for levels in (book.bids, book.asks):  # FIFO: within a level, arrival order
            for level in levels.values():
                ids = [int(oid[1:]) for oid, _ in level]
                assert ids == sorted(ids)
    resting = sum(q for levels in (book.bids, book.asks) for level in levels.values() for _, q in level)
    assert resting == rested - matched  # quantity conserved: what rested minus what makers gave up
    assert engine.depth("bid") + engine.depth("ask") == sum(len(lv) for s in (book.bids, book.asks) for lv in s.values())


@settings(max_examples=100, deadline=None)
@given(orders)
def test_replaying_the_journal_reproduces_the_book(raw):
    live = MatchingEngine("a", frozenset([SYM]))
    records = []
    for order in stream(raw):
        live.apply_order(order, [])
        records.append((REC_ORDER, order_record(_encode(order), 0)))
    # Through the real journal format on disk and the pipeline's replay.
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "wal.log"
        path.write_bytes(b"".join(encode_record(k, p) for k, p in records))
        read_back = recover(path)
    assert read_back == records
    replayed = MatchingEngine("a", frozenset([SYM]))
    replayer = Replayer(replayed, IdWindow(1000, 60_000))
    for index, (kind, payload) in enumerate(read_back):
        replayer.feed(index, kind, payload)
    assert replayed.books[SYM].snapshot() == live.books[SYM].snapshot()
    assert replayed.match_count == live.match_count
