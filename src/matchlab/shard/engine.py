"""The shard's deterministic state machine: books per symbol plus match ids.

The live pipeline and journal replay drive the same methods in the same
order, so replaying the journal rebuilds exactly the books the shard had.
"""

from __future__ import annotations

from time import perf_counter

from matchlab.shard.book import Fill, OrderBook
from matchlab.shard.orders import Order


class MatchingEngine:
    """All books of one shard. Not thread-safe: one consumer drives it."""

    def __init__(self, shard_id: str, symbols: frozenset[str]) -> None:
        self.shard_id = shard_id
        self.books = {symbol: OrderBook(symbol) for symbol in sorted(symbols)}
        self.match_count = 0
        # Sub-timings of the last apply_order, read by the pipeline's metrics.
        self.last_algorithm_s = 0.0
        self.last_insertion_s = 0.0

    def apply_order(self, order: Order, fills: list[Fill]) -> int:
        """Match ``order`` as taker, rest a LIMIT remainder; return the remainder.

        A MARKET remainder is discarded (never rests).
        """
        book = self.books[order.symbol]
        t0 = perf_counter()
        remaining = book.match(order.side, order.price, order.quantity, fills)
        t1 = perf_counter()
        if remaining and order.price is not None:
            book.rest(order.side, order.orderId, order.price, remaining)
        self.last_algorithm_s = t1 - t0
        self.last_insertion_s = perf_counter() - t1
        self.match_count += len(fills)
        return remaining

    def seed(self, orders: list[Order]) -> None:
        """Insert resting orders as given, without matching (experiment setup)."""
        books = self.books
        for order in orders:
            books[order.symbol].rest(order.side, order.orderId, order.price, order.quantity)

    def export_books(self) -> dict[str, tuple[list, list]]:
        return {symbol: book.export_levels() for symbol, book in self.books.items()}

    def load_books(self, books: dict[str, tuple[list, list]]) -> None:
        for symbol, (bids, asks) in books.items():
            self.books[symbol].load_levels(bids, asks)

    def reset(self) -> None:
        for book in self.books.values():
            book.clear()

    def match_id(self, n: int) -> str:
        return f"{self.shard_id}-{n}"

    def depth(self, side: str) -> int:
        attr = "bid_orders" if side == "bid" else "ask_orders"
        return sum(getattr(b, attr) for b in self.books.values())

    def price_levels(self, side: str) -> int:
        return sum(len(b.bids if side == "bid" else b.asks) for b in self.books.values())
