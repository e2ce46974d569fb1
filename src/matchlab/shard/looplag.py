"""How late the shard's event loop runs a timer: a stall (a long callback, a collection, a held GIL) as lag.

A task sleeps ``INTERVAL_S`` and records how much later than asked it woke.
A stall of D seconds delays a wake-up that falls due inside it by up to D,
so every stall longer than the interval shows in the histogram, and shorter
ones about D / ``INTERVAL_S`` of the time: a sampler, like Node's
``monitorEventLoopDelay``, not a trace. Ten wake-ups a second cost the loop a
few hundredths of a percent of a core, so it always runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from time import perf_counter

INTERVAL_S = 0.1


class LoopLagMonitor:
    def __init__(self, histogram, interval_s: float = INTERVAL_S) -> None:
        """``histogram``: a bound child with ``observe(seconds)``."""
        self.histogram = histogram
        self.interval_s = interval_s
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    async def _run(self) -> None:
        while True:
            asked = perf_counter() + self.interval_s
            await asyncio.sleep(self.interval_s)
            self.histogram.observe(max(0.0, perf_counter() - asked))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
