"""From a match rate to an order rate, measured, never assumed (docs/internals/design.md §5).

The ASRs speak in matches per minute; a realistic flow does not produce one
fill per order. Calibration drives the flow against the real target for a
short while, reads the target's own ``me_matches_total`` before and after,
and divides by the orders accepted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from matchlab.errors import CalibrationError
from matchlab.loadgen.profile import LoadProfile
from matchlab.loadgen.runner import RequestSource, run_load

SETTLE_TIMEOUT_S = 10.0
SETTLE_POLL_S = 0.2
MIN_FILLS_PER_ORDER = 0.05



@dataclass(frozen=True)
class Calibration:
    order_rate: float  # orders/s used while calibrating
    orders_ok: int
    matches: float
    fills_per_order: float

    def order_rate_for(self, matches_per_minute: float) -> float:
        """Orders per second that produce ``matches_per_minute`` with this flow."""
        return matches_per_minute / 60.0 / self.fills_per_order

    def to_dict(self) -> dict:
        return asdict(self)


def settled(read: Callable[[], float], timeout: float = SETTLE_TIMEOUT_S) -> float:
    """Read a counter until two successive reads agree (the matcher caught up)."""
    deadline = time.monotonic() + timeout
    last = read()
    while time.monotonic() < deadline:
        time.sleep(SETTLE_POLL_S)
        now = read()
        if now == last:
            return now
        last = now
    return last


def calibrate(
    source: RequestSource,
    match_counter: Callable[[], float],
    order_rate: float,
    duration_s: float,
) -> Calibration:
    """Run ``source`` at ``order_rate`` for ``duration_s`` and measure fills per order."""
    before = settled(match_counter)
    result = run_load(LoadProfile.constant(order_rate, duration_s), source)
    after = settled(match_counter)
    if result.ok == 0:
        raise CalibrationError(f"calibration sent {result.sent} orders and none was accepted: {result.errors}")
    fills = (after - before) / result.ok
    if fills < MIN_FILLS_PER_ORDER:
        raise CalibrationError(
            f"calibration measured {fills:.3f} fills per order ({after - before:.0f} matches for {result.ok} orders): "
            "the books are probably empty or the flow does not cross; seed first"
        )
    return Calibration(order_rate, result.ok, after - before, fills)
