"""The loop-lag sampler on a real event loop: a stall shows as lateness, an idle loop as almost none."""

from __future__ import annotations

import asyncio
import time

from matchlab.shard.looplag import LoopLagMonitor


class Recorded:
    def __init__(self) -> None:
        self.values: list[float] = []

    def observe(self, value: float) -> None:
        self.values.append(value)


def sample(stall_s: float) -> list[float]:
    seen = Recorded()

    async def run() -> None:
        monitor = LoopLagMonitor(seen, interval_s=0.02)
        monitor.start()
        await asyncio.sleep(0.1)
        if stall_s:
            time.sleep(stall_s)  # a callback that holds the loop
        await asyncio.sleep(0.1)
        await monitor.stop()
        assert monitor._task is None

    asyncio.run(run())
    return seen.values


def test_a_stall_longer_than_the_interval_shows_as_lag():
    values = sample(0.15)
    assert max(values) > 0.1, values  # the wake-up due inside the stall came ~0.13-0.15 s late
    assert sum(v > 0.1 for v in values) == 1, values


def test_an_idle_loop_shows_almost_none():
    values = sample(0.0)
    assert len(values) >= 5 and max(values) < 0.1, values
