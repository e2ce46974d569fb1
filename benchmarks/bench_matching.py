"""Matching core in-process: orders/s, fills/s and per-order latency.

Run by hand:  python benchmarks/bench_matching.py [--orders N]

Drives the book + matcher (MatchingEngine.apply_order) with the stationary
two-sided flow at two seeded depths, like the experiments: 500 orders over 50
levels and 10,000 over 500 per symbol. Throughput is timed over the whole
stream; per-order percentiles in a second pass that times each call.
"""

from __future__ import annotations

import argparse
import os
import statistics
from time import perf_counter, perf_counter_ns

import msgspec

from matchlab.loadgen.flow import OrderFlow, seed_orders
from matchlab.shard.engine import MatchingEngine
from matchlab.shard.orders import Order

SYMBOL = "TEST-ASSET-A"
DEPTHS = ((500, 50), (10_000, 500))


def build(count: int, levels: int, orders: int) -> tuple[MatchingEngine, list[Order]]:
    engine = MatchingEngine("a", frozenset([SYMBOL]))
    engine.seed(msgspec.convert(seed_orders(SYMBOL, count, levels), list[Order]))
    flow = OrderFlow([SYMBOL], seed=42)
    stream = msgspec.convert([flow.next_order() for _ in range(orders)], list[Order])
    return engine, stream


def percentile(sorted_ns: list[int], q: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000.0


def run(count: int, levels: int, n: int) -> None:
    engine, stream = build(count, levels, n)
    fills: list = []
    apply = engine.apply_order
    t0 = perf_counter()
    for order in stream:
        fills.clear()
        apply(order, fills)
    elapsed = perf_counter() - t0
    matched = engine.match_count
    depth_after = engine.depth("bid") + engine.depth("ask")

    engine, stream = build(count, levels, n)
    samples = []
    for order in stream:
        fills.clear()
        s = perf_counter_ns()
        apply(order, fills)
        samples.append(perf_counter_ns() - s)
    samples.sort()
    print(
        f"depth {count:>6}/{levels:<4} {n / elapsed:>11,.0f} orders/s {matched / elapsed:>11,.0f} fills/s "
        f"fills/order {matched / n:.2f}  p50 {percentile(samples, 0.5):.2f} µs  p99 {percentile(samples, 0.99):.2f} µs "
        f"p99.9 {percentile(samples, 0.999):.2f} µs  mean {statistics.fmean(samples) / 1000:.2f} µs  "
        f"resting after {depth_after}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=500_000)
    args = parser.parse_args()
    print(f"matching core, {os.cpu_count()} cores, {args.orders:,} orders per depth, stationary two-sided flow")
    for count, levels in DEPTHS:
        run(count, levels, args.orders)


if __name__ == "__main__":
    main()
