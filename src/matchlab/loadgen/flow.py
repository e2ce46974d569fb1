"""Order flows and seed books (docs/internals/design.md §5).

The stationary two-sided flow: 60 % aggressive orders (MARKET: they cross
the spread and match at once, and never rest) and 40 % passive ones (LIMITs
resting a few ticks behind the reference price), both sides equally likely.
Aggressive quantities are scaled so that, against a deep book, the volume
they take out is a little above what passive orders put in, so a deep book drifts down slowly instead of random-walking upward;
a thin book refills, because aggressive orders then find less to take than
passive ones add. So depth neither drains nor grows without bound, and
matches per minute hold for the whole run (unlike the anchor's BUY-only
flow, which emptied the asks in a minute).

Marketable LIMITs whose remainders rest were tried and rejected: remainders
resting at the touch shield the deeper passive levels, which then grow
without bound.

Everything is deterministic for a given seed.
"""

from __future__ import annotations

import itertools
import random
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

REFERENCE_PRICE = 15_000  # cents (docs/internals/design.md §5)
MIN_QTY, MAX_QTY = 10, 200


@dataclass(frozen=True)
class OrderMix:
    """What fraction of orders cross the spread, and how far orders sit from it."""

    aggressive_ratio: float = 0.6
    # Aggressive volume relative to passive volume per order; 0.4/0.6 = 0.667
    # balances a deep book exactly, a little more makes it drift down slowly.
    aggressive_volume: float = 0.68
    passive_ticks: int = 5  # a passive BUY rests at reference - 1..passive_ticks
    hot_symbol: str | None = None  # set for the hot-symbol mix
    hot_ratio: float = 0.8

    def __post_init__(self) -> None:
        if not 0.0 <= self.aggressive_ratio <= 1.0:
            raise ValueError(f"aggressive_ratio must be within [0, 1], got {self.aggressive_ratio}")
        if not 0.0 <= self.hot_ratio <= 1.0:
            raise ValueError(f"hot_ratio must be within [0, 1], got {self.hot_ratio}")
        if self.passive_ticks < 1 or self.aggressive_volume <= 0:
            raise ValueError("passive_ticks must be >= 1 and aggressive_volume > 0")


STATIONARY = OrderMix()


def hot_symbol_mix(symbol: str, ratio: float = 0.8) -> OrderMix:
    return OrderMix(hot_symbol=symbol, hot_ratio=ratio)


# Shards de-duplicate orders by orderId (idempotent submission), so every id
# the harness sends must be new: ids carry this process's run id, and each
# flow without an explicit prefix gets its own number.
RUN_ID = f"{int(time.time() * 1000):x}{secrets.token_hex(2)}"
_flows_made = itertools.count(1)


def unique_prefix(tag: str) -> str:
    """An orderId prefix no other flow of this run, or of any other run, uses."""
    return f"{tag}-{RUN_ID}-{next(_flows_made)}-"


class OrderFlow:
    """An endless stream of order dicts ready to post as JSON, reproducible per seed (ids aside)."""

    def __init__(
        self,
        symbols: Sequence[str],
        mix: OrderMix = STATIONARY,
        seed: int = 1,
        id_prefix: str | None = None,
        reference_price: int = REFERENCE_PRICE,
    ) -> None:
        if not symbols:
            raise ValueError("an order flow needs at least one symbol")
        if mix.hot_symbol is not None and mix.hot_symbol not in symbols:
            raise ValueError(f"hot symbol {mix.hot_symbol!r} is not among the flow's symbols")
        self.symbols = list(symbols)
        self.mix = mix
        self.reference = reference_price
        self._rng = random.Random(seed)
        self._prefix = id_prefix if id_prefix is not None else unique_prefix("o")
        self._n = 0
        self._others = [s for s in self.symbols if s != mix.hot_symbol] or self.symbols

    def _symbol(self) -> str:
        rng, mix = self._rng, self.mix
        if mix.hot_symbol is not None and (len(self._others) == 0 or rng.random() < mix.hot_ratio):
            return mix.hot_symbol
        return rng.choice(self._others if mix.hot_symbol is not None else self.symbols)

    def next_order(self) -> dict:
        rng, mix = self._rng, self.mix
        self._n += 1
        buy = rng.random() < 0.5
        order = {"orderId": f"{self._prefix}{self._n}", "symbol": self._symbol(), "side": "BUY" if buy else "SELL"}
        if rng.random() < mix.aggressive_ratio:
            order["type"] = "MARKET"
            order["quantity"] = max(1, round(rng.randint(MIN_QTY, MAX_QTY) * mix.aggressive_volume))
        else:
            offset = rng.randint(1, mix.passive_ticks)
            order["type"] = "LIMIT"
            order["price"] = self.reference - offset if buy else self.reference + offset
            order["quantity"] = rng.randint(MIN_QTY, MAX_QTY)
        return order

    def __iter__(self) -> Iterator[dict]:
        while True:
            yield self.next_order()


def seed_orders(
    symbol: str,
    count: int,
    levels: int,
    seed: int = 7,
    id_prefix: str = f"seed-{RUN_ID}",
    reference_price: int = REFERENCE_PRICE,
) -> list[dict]:
    """``count`` resting orders over ``levels`` price levels around the reference.

    Half the levels are asks above the reference, half bids below it (tick 1),
    orders spread round-robin across levels, quantities 10-200.
    """
    if count < 0 or levels < 2:
        raise ValueError(f"a seed needs count >= 0 and levels >= 2, got count={count} levels={levels}")
    if levels > 2 * (reference_price - 1):
        raise ValueError(f"{levels} levels do not fit below a reference price of {reference_price}")
    rng = random.Random(f"{seed}:{symbol}")
    per_side = levels // 2
    orders = []
    for i in range(count):
        sell = i % 2 == 0
        distance = 1 + (i // 2) % per_side
        orders.append(
            {
                "orderId": f"{id_prefix}-{symbol}-{i}",
                "symbol": symbol,
                "side": "SELL" if sell else "BUY",
                "type": "LIMIT",
                "price": reference_price + distance if sell else reference_price - distance,
                "quantity": rng.randint(MIN_QTY, MAX_QTY),
            }
        )
    return orders
