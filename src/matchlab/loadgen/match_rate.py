"""Holding a target *match* rate: an open-model schedule whose rate follows measured fills.

Fills per order drift with the book's state (a freshly seeded book fills
differently from one the flow has shaped), by several percent, which is
most of ASR 2's 6 % margin between 5,040 offered and 4,750 required. So a
match-rate phase starts from the calibrated order rate and then, every few
seconds, re-measures fills per order over a trailing window from the target's
own counters (``me_matches_total`` / ``me_orders_received_total``) and sets
the order rate that yields the target, plus what makes up, over the next
``HORIZON_S``, any shortfall or surplus of matches since the phase began (so
the phase's mean match rate is the target). Requests still leave on schedule
whatever the answers (open model); only the schedule's rate is steered.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator

CONTROL_EVERY_S = 2.5
WINDOW_S = 15.0  # fills per order measured over this trailing window
HORIZON_S = 20.0  # a match deficit (or surplus) so far is made up over this horizon
MAX_STEP = 0.15  # at most +-15 % per adjustment
MIN_ORDERS = 50  # fewer accepted orders in the window than this: keep the rate
MIN_RATE = 0.1


class AdaptiveRateProfile:
    """A constant-arrival-rate profile whose rate may be changed while it runs."""

    def __init__(self, initial_rate: float, duration_s: float) -> None:
        if initial_rate <= 0 or duration_s <= 0:
            raise ValueError(f"need a positive rate and duration, got {initial_rate}, {duration_s}")
        self.rate = initial_rate
        self.duration_s = duration_s
        self.history: list[tuple[float, float]] = [(0.0, initial_rate)]  # (offset, rate) at each change
        self._lock = threading.Lock()

    def set_rate(self, offset: float, rate: float) -> None:
        with self._lock:
            self.rate = max(MIN_RATE, rate)
            self.history.append((offset, self.rate))

    def rate_at(self, t: float) -> float:
        return self.rate

    def send_offsets(self) -> Iterator[float]:
        t = 0.0
        while t < self.duration_s:
            yield t
            t += 1.0 / self.rate

    def expected_requests(self) -> float:
        total = 0.0
        points = [*self.history, (self.duration_s, self.rate)]
        for (t0, r), (t1, _) in itertools.pairwise(points):
            total += r * max(0.0, min(t1, self.duration_s) - t0)
        return total


class MatchRateController:
    """Steers an AdaptiveRateProfile so the target's match rate meets ``matches_per_min``."""

    def __init__(
        self,
        profile: AdaptiveRateProfile,
        matches_per_min: float,
        read_counters: Callable[[], tuple[float, float]],  # (matches, accepted orders), cumulative
        every_s: float = CONTROL_EVERY_S,
        window_s: float = WINDOW_S,
        horizon_s: float = HORIZON_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.profile = profile
        self.target = matches_per_min
        self.read = read_counters
        self.every_s = every_s
        self.window_s = window_s
        self.horizon_s = horizon_s
        self.clock = clock
        self.samples: deque[tuple[float, float, float]] = deque()
        self.adjustments: list[tuple[float, float, float]] = []  # (offset, fills/order, new rate)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="match-rate", daemon=True)
        self._t0 = 0.0

    def start(self) -> MatchRateController:
        self._t0 = self.clock()
        self.samples.append((self._t0, *self.read()))
        self._first = self.samples[0]
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def hold_steady(self, window_rate: Callable[[float, float], float | None] | None = None) -> float:
        """Stop steering and fix the rate that yields the target at the fills per order measured last.

        The steered rate also makes up the phase's deficit or surplus so far;
        an open-loop window that follows must run at the plain rate instead.
        ``window_rate`` (orders and matches so far -> order rate, or None) may
        know the window's own fills better than the warm-up's measurement does.
        """
        self.stop()
        try:
            matches, orders = self.read()
        except Exception:  # noqa: BLE001 - any failed reading (a scrape timed out): keep the last estimate
            matches = orders = None
        first_m, first_o = self._first[1], self._first[2]
        forecast = window_rate(orders - first_o, matches - first_m) if window_rate and orders is not None else None
        if forecast:
            self.profile.set_rate(self.clock() - self._t0, forecast)
            return self.profile.rate
        if orders is not None and orders - first_o >= MIN_ORDERS and matches > first_m:
            fills = (matches - first_m) / (orders - first_o)  # the whole warm-up: steadier than the last window
        elif self.adjustments:
            fills = self.adjustments[-1][1]
        else:
            return self.profile.rate
        self.profile.set_rate(self.clock() - self._t0, self.target / 60.0 / fills)
        return self.profile.rate

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                now = self.clock()
                self.samples.append((now, *self.read()))
            except Exception:  # a missed reading keeps the current rate
                continue
            while len(self.samples) > 2 and now - self.samples[1][0] >= self.window_s:
                self.samples.popleft()
            _t_old, m_old, o_old = self.samples[0]
            _, m_new, o_new = self.samples[-1]
            orders, matches = o_new - o_old, m_new - m_old
            if orders < MIN_ORDERS or matches <= 0:
                continue
            fills_per_order = matches / orders
            elapsed = now - self._first[0]
            deficit = self.target / 60.0 * elapsed - (m_new - self._first[1])
            wanted = (self.target / 60.0 + deficit / self.horizon_s) / fills_per_order
            current = self.profile.rate
            new = min(current * (1 + MAX_STEP), max(current * (1 - MAX_STEP), wanted))
            self.profile.set_rate(now - self._t0, new)
            self.adjustments.append((now - self._t0, fills_per_order, new))
