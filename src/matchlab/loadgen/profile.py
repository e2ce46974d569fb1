"""Arrival-rate load shapes with k6's semantics, and the send schedule they imply.

A profile is a start rate plus stages (duration, target rate); the rate moves
linearly from one stage's target to the next, exactly like k6's
``ramping-arrival-rate`` (``constant-arrival-rate`` is one flat stage). The
i-th request is due at the time t where the integral of the rate reaches i,
so the schedule is fixed before the run starts and never bends to the
server's answers (open model).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    duration_s: float
    target_rate: float  # requests per second at the end of the stage

    def __post_init__(self) -> None:
        if not self.duration_s > 0:
            raise ValueError(f"a stage needs a positive duration, got {self.duration_s}")
        if self.target_rate < 0:
            raise ValueError(f"a stage's target rate cannot be negative, got {self.target_rate}")


@dataclass(frozen=True)
class LoadProfile:
    start_rate: float
    stages: tuple[Stage, ...]

    def __post_init__(self) -> None:
        if self.start_rate < 0:
            raise ValueError(f"start rate cannot be negative, got {self.start_rate}")
        if not self.stages:
            raise ValueError("a load profile needs at least one stage")

    @classmethod
    def constant(cls, rate: float, duration_s: float) -> LoadProfile:
        """k6 constant-arrival-rate: ``rate`` requests/s for ``duration_s``."""
        return cls(rate, (Stage(duration_s, rate),))

    @classmethod
    def ramping(cls, start_rate: float, stages: list[tuple[float, float]]) -> LoadProfile:
        """k6 ramping-arrival-rate: stages of (duration_s, target_rate)."""
        return cls(start_rate, tuple(Stage(d, r) for d, r in stages))

    @property
    def duration_s(self) -> float:
        return sum(s.duration_s for s in self.stages)

    def rate_at(self, t: float) -> float:
        """The arrival rate the profile asks for at ``t`` seconds."""
        start, r0 = 0.0, self.start_rate
        for stage in self.stages:
            if t < start + stage.duration_s:
                return r0 + (stage.target_rate - r0) * (t - start) / stage.duration_s
            start, r0 = start + stage.duration_s, stage.target_rate
        return 0.0

    def expected_requests(self) -> float:
        total, r0 = 0.0, self.start_rate
        for stage in self.stages:
            total += (r0 + stage.target_rate) / 2 * stage.duration_s
            r0 = stage.target_rate
        return total

    def send_offsets(self) -> Iterator[float]:
        """Due times (seconds from start) of every request, in order."""
        start, r0 = 0.0, self.start_rate
        carried = 0.0  # requests "owed" by earlier stages: where the next one falls
        for stage in self.stages:
            d, r1 = stage.duration_s, stage.target_rate
            slope = (r1 - r0) / d
            area = (r0 + r1) / 2 * d
            n = carried
            while n < area - 1e-9:
                if abs(slope) < 1e-12:
                    tau = n / r0
                else:  # solve r0*tau + slope*tau^2/2 = n
                    tau = (-r0 + math.sqrt(max(0.0, r0 * r0 + 2 * slope * n))) / slope
                yield start + tau
                n += 1.0
            carried = n - area
            start, r0 = start + d, r1
