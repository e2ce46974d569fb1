"""One symbol's order book: price-time priority, maker-price execution.

Each side keeps a dict of price -> FIFO level (a deque of ``[order_id, qty]``)
and a heap of level keys whose top is the best price. Asks are keyed by
price and bids by -price, so one loop serves both sides: the contra side's
best key is always ``heap[0]`` and a LIMIT crosses while ``key <= bound``.
Levels only ever empty from the top (there are no cancels), so the heap needs
no lazy deletion.

This module is the hot path of the whole experiment: it allocates as little
as it can and avoids calls inside the inner loop on purpose.
"""

from __future__ import annotations

from collections import deque
from heapq import heapify, heappop, heappush

BUY = "BUY"
SELL = "SELL"

# A fill as the book reports it: (maker_order_id, execution_price, quantity).
Fill = tuple[str, int, int]


class OrderBook:
    """Resting orders of one symbol and the matching algorithm over them."""

    __slots__ = ("_ask_keys", "_bid_keys", "ask_orders", "asks", "bid_orders", "bids", "symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.bids: dict[int, deque[list]] = {}
        self.asks: dict[int, deque[list]] = {}
        self._bid_keys: list[int] = []  # -price, so heap[0] is the highest bid
        self._ask_keys: list[int] = []  # price, so heap[0] is the lowest ask
        self.bid_orders = 0
        self.ask_orders = 0

    def match(self, side: str, limit: int | None, quantity: int, fills: list[Fill]) -> int:
        """Match an incoming (taker) order against the contra side.

        ``limit`` is None for a MARKET order. Fills are appended to ``fills`` in
        execution order; the unfilled remainder is returned (the caller decides
        whether it rests).
        """
        if side == BUY:
            heap, levels, sign = self._ask_keys, self.asks, 1
        else:
            heap, levels, sign = self._bid_keys, self.bids, -1
        bound = None if limit is None else limit * sign
        emptied = 0
        while heap:
            key = heap[0]
            if bound is not None and key > bound:
                break
            price = key * sign
            level = levels[price]
            while level:
                maker = level[0]
                available = maker[1]
                if available > quantity:
                    maker[1] = available - quantity
                    fills.append((maker[0], price, quantity))
                    quantity = 0
                    break
                fills.append((maker[0], price, available))
                level.popleft()
                emptied += 1
                quantity -= available
                if not quantity:
                    break
            if not level:
                heappop(heap)
                del levels[price]
            if not quantity:
                break
        if emptied:
            if side == BUY:
                self.ask_orders -= emptied
            else:
                self.bid_orders -= emptied
        return quantity

    def rest(self, side: str, order_id: str, price: int, quantity: int) -> None:
        """Append an order at the back of its price level (time priority)."""
        if side == BUY:
            levels, heap, key = self.bids, self._bid_keys, -price
            self.bid_orders += 1
        else:
            levels, heap, key = self.asks, self._ask_keys, price
            self.ask_orders += 1
        level = levels.get(price)
        if level is None:
            levels[price] = deque(([order_id, quantity],))
            heappush(heap, key)
        else:
            level.append([order_id, quantity])

    def best_bid(self) -> int | None:
        return -self._bid_keys[0] if self._bid_keys else None

    def best_ask(self) -> int | None:
        return self._ask_keys[0] if self._ask_keys else None

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()
        self._bid_keys.clear()
        self._ask_keys.clear()
        self.bid_orders = self.ask_orders = 0

    def export_levels(self) -> tuple[list, list]:
        """Both sides as (price, [[order_id, qty], ...]) pairs, for a journal snapshot."""
        return (
            [(price, list(level)) for price, level in self.bids.items()],
            [(price, list(level)) for price, level in self.asks.items()],
        )

    def load_levels(self, bids: list, asks: list) -> None:
        """Replace the book with ``export_levels()``'s output."""
        self.clear()
        self.bids = {price: deque(orders) for price, orders in bids}
        self.asks = {price: deque(orders) for price, orders in asks}
        self._bid_keys = [-price for price in self.bids]
        self._ask_keys = list(self.asks)
        heapify(self._bid_keys)
        heapify(self._ask_keys)
        self.bid_orders = sum(len(level) for level in self.bids.values())
        self.ask_orders = sum(len(level) for level in self.asks.values())

    def snapshot(self) -> dict:
        """Levels best-first, each with its orders in time priority."""

        def side(levels: dict[int, deque[list]], descending: bool) -> list:
            return [
                [price, [[oid, qty] for oid, qty in levels[price]]]
                for price in sorted(levels, reverse=descending)
            ]

        return {
            "symbol": self.symbol,
            "bids": side(self.bids, descending=True),
            "asks": side(self.asks, descending=False),
        }
