"""How many fills the next orders of a seeded flow will make, worked out before they are sent.

A flow's orders are fixed by its seed, and which of them fill, and how
often, depends only on each symbol's sequence of orders and the books they
meet, not on when they are sent. So a replica of the freshly seeded books,
run through the shard's own matching code, knows the fills of every order
the flow will send. Over a 100 s window, fills per order of one sample path
differ from the warm-up's by several percent either way (0.976 against
1.036 in one run), which is all of ASR 2's 6 % margin between the 5,040
matches/min offered and the 4,750 judged: a rate fixed from the warm-up's
measurement then offers less than the bar, and the verdict cannot decide.
With the forecast, the open-loop window's order rate is the one at which
the window's own orders make the target's matches.

The forecast is used only after it has been checked against what the
warm-up really made (``agrees``); where the replica and the shards part
ways (books not as seeded, orders rejected), the measured rate stays.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Mapping, Sequence

import msgspec

from matchlab.loadgen.flow import OrderFlow, seed_orders
from matchlab.shard.engine import MatchingEngine
from matchlab.shard.orders import Order

# The warm-up's measured fills may differ from the replica's by this much before the forecast is distrusted:
# a few orders in flight, or answered in another order than sent, move a warm-up's count by well under 1 %.
AGREEMENT = 0.02
MAX_ORDERS_PER_MATCH = 20


class FillForecast:
    """Cumulative fills of a flow's first n orders against books seeded as given."""

    def __init__(self, flow: OrderFlow, seeds: Mapping[str, tuple[int, int]]) -> None:
        """``seeds``: (resting orders, levels) per symbol, as ``seed_books`` placed them."""
        missing = [s for s in flow.symbols if s not in seeds]
        if missing:
            raise ValueError(f"no seed given for the flow's symbols {missing}")
        self.engine = MatchingEngine("forecast", frozenset(seeds))
        self.engine.seed([msgspec.convert(o, Order) for symbol, (count, levels) in seeds.items()
                          for o in seed_orders(symbol, count, levels)])
        self.flow = flow
        self.cumulative = [0]  # fills made by the first i orders
        self.symbols: list[str] = []  # the i-th order's symbol
        self._fills: list = []

    def fills_of_first(self, n: int) -> int:
        """Fills the flow's first ``n`` orders make (replaying further as needed)."""
        while len(self.cumulative) <= n:
            self._fills.clear()
            order = msgspec.convert(self.flow.next_order(), Order)
            self.engine.apply_order(order, self._fills)
            self.cumulative.append(self.cumulative[-1] + len(self._fills))
            self.symbols.append(order.symbol)
        return self.cumulative[n]

    def fills_by_symbol(self, first: int, last: int) -> dict[str, int]:
        """Fills of orders ``first`` .. ``last - 1``, by the symbol each order traded."""
        self.fills_of_first(last)
        out: dict[str, int] = {}
        for i in range(first, last):
            made = self.cumulative[i + 1] - self.cumulative[i]
            if made:
                out[self.symbols[i]] = out.get(self.symbols[i], 0) + made
        return out

    def window_rates(self, rate: float, start_s: float, end_s: float, window_s: float, step_s: float) -> list[float]:
        """Matches/min of each ``window_s`` window, sliding by ``step_s``, of a phase sent at ``rate`` orders/s
        (order i due at i / rate), between ``start_s`` and ``end_s`` of the phase."""
        out, t = [], start_s
        while t + window_s <= end_s + 1e-9:
            first, last = math.ceil(t * rate), math.ceil((t + window_s) * rate)
            out.append((self.fills_of_first(last) - self.cumulative[first]) * 60.0 / window_s)
            t += step_s
        return out

    def margin_rate_for(self, bar_per_min: float, start_s: float, end_s: float, window_s: float, step_s: float,
                        sigmas: float, guess: float, spread_over_s: float = 0.0) -> tuple[float, float, float, float]:
        """(order rate, mean, standard deviation, minimum of the window rates) for a phase sent at one rate whose
        every window between ``start_s`` and ``end_s`` makes ``bar_per_min`` plus ``sigmas`` standard deviations
        of the windows' spread.

        The schedule is fixed, so each window's fills are known; the spread stands for what moves a measured
        window off its forecast (scrapes land a few seconds apart on each shard, so the summed windows cover
        other orders than the forecast's). It is read over ``spread_over_s`` of the flow from ``start_s`` when
        that is longer than the phase: a short phase's dozen overlapping windows see little of how fills per
        order wander (seeds 1-12 of this flow: sd 28-139/min over 100 s, 69-136/min over 300 s)."""
        if bar_per_min <= 0 or guess <= 0 or end_s - start_s < window_s:
            raise ValueError(f"need a positive bar and guess and a span of at least one window, got {bar_per_min}, "
                             f"{guess}, {start_s}..{end_s}")
        spread_end = max(end_s, start_s + spread_over_s)
        in_phase = len(self.window_rates(guess, start_s, end_s, window_s, step_s))  # they lead the spread's; how many is rate-free

        def read(rate: float) -> tuple[float, float, float]:
            spread = self.window_rates(rate, start_s, spread_end, window_s, step_s)
            phase = spread[:in_phase]
            sd = statistics.stdev(spread) if len(spread) > 1 else 0.0
            return sum(phase) / len(phase), sd, min(phase)

        def clears(rate: float) -> bool:
            _, sd, lowest = read(rate)
            return lowest >= bar_per_min + sigmas * sd

        # Bisect on the rate: windows' fills move by whole orders, so a fixed-point step overshoots or stalls.
        low, high = guess / 4, guess
        while not clears(high):
            low, high = high, high * 2
            if high > MAX_ORDERS_PER_MATCH * guess:
                raise ValueError(f"no order rate up to {high:,.0f}/s makes every window {bar_per_min:,.0f} matches/min "
                                 f"plus {sigmas:g} sd: the flow hardly fills")
        while high - low > 0.0005 * high:
            mid = (low + high) / 2
            low, high = (low, mid) if clears(mid) else (mid, high)
        mean, sd, lowest = read(high)
        return high, mean, sd, lowest

    def agrees(self, orders: int, matches: float) -> bool:
        """Whether ``matches`` measured over the flow's first ``orders`` orders are the replica's count."""
        want = self.fills_of_first(orders)
        return orders > 0 and want > 0 and abs(matches - want) <= AGREEMENT * want

    def order_rate_for(self, matches_per_min: float, after: int, seconds: float) -> tuple[float, float] | None:
        """(order rate, fills per order) at which the orders after the first ``after`` make
        ``matches_per_min`` over ``seconds``: the fewest orders whose fills reach the target, spread evenly.
        None if even twenty orders per wanted match would not reach it (a flow that hardly fills)."""
        if matches_per_min <= 0 or seconds <= 0:
            raise ValueError(f"need a positive match rate and window, got {matches_per_min}, {seconds}")
        wanted = math.ceil(matches_per_min / 60.0 * seconds)
        want = self.fills_of_first(after) + wanted
        n = after + 2 * wanted  # fills per order are near 1 for the stationary flow: replay a generous stretch
        while self.fills_of_first(n) < want:
            if n - after >= MAX_ORDERS_PER_MATCH * wanted:
                return None
            n = after + min((n - after) * 2, MAX_ORDERS_PER_MATCH * wanted)
        count = bisect.bisect_left(self.cumulative, want, lo=after) - after
        return count / seconds, (self.cumulative[after + count] - self.cumulative[after]) / count

    def constant_rate_for(self, matches_per_min: float, warmup_s: float, duration_s: float,
                          guess: float) -> tuple[float, float] | None:
        """(order rate, fills per order) of a phase sent at one rate throughout (its senders cannot be steered)
        whose orders after ``warmup_s`` make ``matches_per_min``; None for a flow that hardly fills."""
        if not 0 <= warmup_s < duration_s or guess <= 0:
            raise ValueError(f"need 0 <= warm-up < duration and a positive guess, got {warmup_s}, {duration_s}, {guess}")
        want = matches_per_min / 60.0 * (duration_s - warmup_s)
        rate = guess
        for _ in range(20):  # fills per order change slowly with the window's place: a few rounds settle it
            first, last = round(rate * warmup_s), max(round(rate * duration_s), round(rate * warmup_s) + 1)
            if last - first > MAX_ORDERS_PER_MATCH * want:
                return None
            fills = self.fills_of_first(last) - self.cumulative[first]
            new = rate * want / max(fills, 1)
            settled = abs(new - rate) <= 0.001 * rate
            rate = new
            if settled:
                break
        first, last = round(rate * warmup_s), round(rate * duration_s)
        return rate, self.fills_per_order(first, last - first)

    def fills_per_order(self, after: int, count: int) -> float:
        return (self.fills_of_first(after + count) - self.cumulative[after]) / count if count > 0 else 0.0


def orders_due(t: float, start: float, rate: float, sent: int) -> int:
    """How many of a fixed-rate schedule's orders were due by time ``t`` (order i is due at start + i / rate), never
    more than the ``sent`` it had when it ended: a scrape after the load stopped saw no later orders."""
    return min(max(math.ceil((t - start) * rate), 0), sent)


def seeds_for(symbols: Sequence[str], shard_symbols: Mapping[str, Sequence[str]],
              seeded: Mapping[str, tuple[int, int]]) -> dict[str, tuple[int, int]] | None:
    """(orders, levels) per symbol from what each shard was seeded with; None where a shard's seed is unknown."""
    out = {}
    for shard, names in shard_symbols.items():
        for symbol in names:
            if symbol in symbols:
                if shard not in seeded:
                    return None
                out[symbol] = seeded[shard]
    return out if set(out) == set(symbols) else None
