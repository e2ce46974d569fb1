"""Matching semantics of one book (docs/internals/design.md §3.2), with depth checked after each step."""

from __future__ import annotations

import msgspec

from matchlab.shard.book import OrderBook
from matchlab.shard.engine import MatchingEngine
from matchlab.shard.orders import Order

SYM = "TEST-ASSET-A"


def order(oid: str, side: str, qty: int, price: int | None = None) -> Order:
    return Order(orderId=oid, symbol=SYM, side=side, type="LIMIT" if price else "MARKET", quantity=qty, price=price)


def engine_with(*resting: Order) -> MatchingEngine:
    engine = MatchingEngine("a", frozenset([SYM]))
    engine.seed(list(resting))
    return engine


def depth(engine: MatchingEngine) -> tuple[int, int, int, int]:
    return engine.depth("bid"), engine.depth("ask"), engine.price_levels("bid"), engine.price_levels("ask")


def test_buy_hits_lowest_ask_first_at_maker_price():
    e = engine_with(order("s1", "SELL", 10, 101), order("s2", "SELL", 10, 100), order("s3", "SELL", 10, 102))
    fills = []
    left = e.apply_order(order("b1", "BUY", 10, 105), fills)
    assert left == 0
    assert fills == [("s2", 100, 10)]  # best price, executed at the maker's price, not 105
    assert depth(e) == (0, 2, 0, 2)


def test_sell_hits_highest_bid_first():
    e = engine_with(order("b1", "BUY", 5, 99), order("b2", "BUY", 5, 101), order("b3", "BUY", 5, 100))
    fills = []
    e.apply_order(order("s1", "SELL", 7, 95), fills)
    assert fills == [("b2", 101, 5), ("b3", 100, 2)]
    assert e.books[SYM].snapshot()["bids"] == [[100, [["b3", 3]]], [99, [["b1", 5]]]]
    assert depth(e) == (2, 0, 2, 0)


def test_fifo_within_a_level():
    e = engine_with(order("s1", "SELL", 5, 100), order("s2", "SELL", 5, 100), order("s3", "SELL", 5, 100))
    fills = []
    e.apply_order(order("b1", "BUY", 7, 100), fills)
    assert fills == [("s1", 100, 5), ("s2", 100, 2)]
    assert e.books[SYM].snapshot()["asks"] == [[100, [["s2", 3], ["s3", 5]]]]
    assert depth(e) == (0, 2, 0, 1)


def test_partial_fills_across_several_levels_then_limit_remainder_rests():
    e = engine_with(order("s1", "SELL", 3, 100), order("s2", "SELL", 4, 101), order("s3", "SELL", 5, 103))
    fills = []
    left = e.apply_order(order("b1", "BUY", 10, 102), fills)
    assert fills == [("s1", 100, 3), ("s2", 101, 4)]
    assert left == 3
    snap = e.books[SYM].snapshot()
    assert snap["bids"] == [[102, [["b1", 3]]]]  # rests at its own limit
    assert snap["asks"] == [[103, [["s3", 5]]]]
    assert depth(e) == (1, 1, 1, 1)
    assert e.match_count == 2


def test_market_remainder_is_discarded():
    e = engine_with(order("s1", "SELL", 3, 100), order("s2", "SELL", 4, 250))
    fills = []
    left = e.apply_order(order("m1", "BUY", 10), fills)
    assert fills == [("s1", 100, 3), ("s2", 250, 4)]  # a MARKET order has no price bound
    assert left == 3
    assert depth(e) == (0, 0, 0, 0)
    assert e.books[SYM].snapshot() == {"symbol": SYM, "bids": [], "asks": []}


def test_market_into_empty_book_never_rests():
    e = engine_with()
    fills = []
    assert e.apply_order(order("m1", "SELL", 10), fills) == 10
    assert fills == [] and depth(e) == (0, 0, 0, 0)


def test_limit_that_does_not_cross_rests_behind_same_price():
    e = engine_with(order("b1", "BUY", 5, 99), order("s1", "SELL", 5, 101))
    fills = []
    e.apply_order(order("b2", "BUY", 6, 99), fills)
    e.apply_order(order("s2", "SELL", 1, 100), fills)
    assert fills == []
    snap = e.books[SYM].snapshot()
    assert snap["bids"] == [[99, [["b1", 5], ["b2", 6]]]]
    assert snap["asks"] == [[100, [["s2", 1]]], [101, [["s1", 5]]]]
    assert depth(e) == (2, 2, 1, 2)


def test_exact_fill_removes_level_and_best_prices_update():
    book = OrderBook(SYM)
    book.rest("SELL", "s1", 100, 5)
    book.rest("SELL", "s2", 101, 5)
    book.rest("BUY", "b1", 98, 5)
    assert (book.best_bid(), book.best_ask()) == (98, 100)
    fills = []
    assert book.match("BUY", 100, 5, fills) == 0
    assert (book.best_bid(), book.best_ask()) == (98, 101)
    assert 100 not in book.asks


def test_reset_empties_every_book():
    e = engine_with(order("s1", "SELL", 3, 100), order("b1", "BUY", 3, 90))
    e.reset()
    assert depth(e) == (0, 0, 0, 0)


def test_order_struct_round_trips_through_msgpack():
    o = order("x", "BUY", 5, 100)
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(o), type=Order) == o
