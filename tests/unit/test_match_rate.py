"""The match-rate controller steers the order rate to hold a target match rate."""

from __future__ import annotations

import threading
import time

import pytest

from matchlab.loadgen.match_rate import AdaptiveRateProfile, MatchRateController


class SimulatedTarget:
    """Accepts orders at the profile's rate; fills per order drift from 1.05 down to 0.90."""

    def __init__(self, profile: AdaptiveRateProfile) -> None:
        self.profile = profile
        self.orders = self.matches = 0.0
        self.t = 0.0
        self._lock = threading.Lock()

    def advance(self, dt: float) -> None:
        with self._lock:
            fpo = 1.05 - 0.15 * min(1.0, self.t / 60.0)
            n = self.profile.rate * dt
            self.orders += n
            self.matches += n * fpo
            self.t += dt

    def read(self) -> tuple[float, float]:
        with self._lock:
            return self.matches, self.orders


def test_controller_holds_the_target_match_rate_while_fills_per_order_drift():
    profile = AdaptiveRateProfile(initial_rate=84.0, duration_s=60.0)  # calibrated as if fills/order were 1.0
    target = SimulatedTarget(profile)
    # Adjust every 0.005 s of real time; windows in simulated seconds (the controller reads the simulated clock).
    controller = MatchRateController(profile, 5040.0, target.read, every_s=0.005, window_s=15, horizon_s=20,
                                     clock=lambda: target.t)
    controller.start()
    try:
        for _ in range(600):  # 60 simulated seconds in 0.1 s steps
            target.advance(0.1)
            time.sleep(0.001)
    finally:
        controller.stop()
    assert len(controller.adjustments) > 5
    mean_matches_per_min = target.matches / target.t * 60
    assert mean_matches_per_min == pytest.approx(5040, rel=0.015)  # uncontrolled: ~4,914 (-2.5 %)
    # fills per order fell to ~0.9, so the order rate must have risen above the calibrated 84/s
    assert profile.rate > 88
    assert profile.expected_requests() == pytest.approx(target.orders, rel=0.05)


def test_adaptive_profile_schedule_follows_rate_changes():
    profile = AdaptiveRateProfile(10.0, 4.0)
    offsets = []
    for t in profile.send_offsets():
        offsets.append(t)
        if t >= 2.0 and profile.rate == 10.0:
            profile.set_rate(t, 20.0)
    assert sum(1 for t in offsets if t < 2.0) == 20
    assert sum(1 for t in offsets if t >= 2.0) == pytest.approx(40, abs=1)
    assert profile.expected_requests() == pytest.approx(60, abs=1)
    with pytest.raises(ValueError):
        AdaptiveRateProfile(0, 10)


def test_hold_steady_fixes_the_plain_rate_for_the_target_without_the_catch_up_term():
    profile = AdaptiveRateProfile(initial_rate=84.0, duration_s=60.0)
    target = SimulatedTarget(profile)
    controller = MatchRateController(profile, 5040.0, target.read, every_s=0.005, window_s=5, horizon_s=20,
                                     clock=lambda: target.t)
    controller.start()
    try:
        for _ in range(200):  # 20 simulated seconds: fills per order drifting down, a deficit building
            target.advance(0.1)
            time.sleep(0.001)
    finally:
        fixed = controller.hold_steady()
    fills = (target.matches - 0) / target.orders  # over the whole warm-up
    assert fixed == pytest.approx(5040 / 60 / fills, rel=0.01)  # the plain rate for the target at those fills
    n = len(controller.adjustments)
    target.advance(5.0)
    time.sleep(0.05)
    assert len(controller.adjustments) == n and profile.rate == fixed  # and nothing steers it afterwards
