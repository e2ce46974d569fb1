"""Closed-loop saturation: N keep-alive connections, each sending as soon as the last answered.

This is *not* how latency is measured (that is the open-model runner's job);
it finds the most a target can take, for benchmarks and capacity knees.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass

from matchlab.http1 import Upstreams
from matchlab.loadgen.runner import CONNECT_TIMEOUT_S, REQUEST_TIMEOUT_S, RequestSource
from matchlab.service import event_loop_runner


@dataclass(frozen=True)
class SaturationResult:
    requests: int
    ok: int
    statuses: dict[str, int]
    elapsed_s: float
    client_cpu_s: float

    @property
    def rate(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def ok_rate(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s else 0.0


async def saturate_async(source: RequestSource, concurrency: int, duration_s: float) -> SaturationResult:
    statuses: Counter[str] = Counter()
    upstreams = Upstreams(concurrency, REQUEST_TIMEOUT_S, CONNECT_TIMEOUT_S)
    cpu0 = time.process_time()
    deadline = time.perf_counter() + duration_s

    async def worker() -> None:
        while time.perf_counter() < deadline:
            req = source()
            statuses[await upstreams.post_status(req.url, req.body)] += 1

    start = time.perf_counter()
    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        upstreams.close()
    elapsed = time.perf_counter() - start
    total = sum(statuses.values())
    return SaturationResult(total, statuses.get("200", 0), dict(statuses), elapsed, time.process_time() - cpu0)


def saturate(source: RequestSource, concurrency: int = 64, duration_s: float = 10.0) -> SaturationResult:
    return event_loop_runner()(saturate_async(source, concurrency, duration_s))
