"""What the same Python work costs when it runs in isolated bursts instead of back to back.

Run by hand:  python benchmarks/bench_bursts.py [--seconds S]

At the rates the experiments run, a service wakes up for each order, does its share of the work and
goes back to sleep; at saturation, orders queue and one wake-up serves many. This benchmark takes
the process out of the picture: one thread runs a fixed piece of work (one order's decode, match and
reply encode on a seeded book, repeated ``--orders-per-burst`` times) either back to back or with a
pause between bursts as long as the gap between orders at a given rate, and prints the thread's CPU
time per order inside the bursts only (``time.thread_time``), so the pauses themselves cost nothing.
``--spin`` pauses by spinning instead of sleeping: a CPU that never idles, for comparison.

A ratio well above 1 means the machine charges the work for running cold (caches, TLB and branch
predictors refilled after the pause, a vCPU woken by its hypervisor): a cost per order at moderate
rates that no change to the work itself removes, only fewer wake-ups per order.
"""

from __future__ import annotations

import argparse
import os
import time

import msgspec
import orjson

from matchlab.loadgen.flow import OrderFlow, seed_orders
from matchlab.shard.engine import MatchingEngine
from matchlab.shard.orders import Order, parse_order

SYMBOLS = ["TEST-ASSET-A", "TEST-ASSET-B", "TEST-ASSET-C", "TEST-ASSET-D"]
GAPS_MS = (0.0, 0.2, 0.67, 2.0, 10.0)  # back to back, then the gap between orders at 5,000, 1,500, 500, 100/s


def engine_and_bodies(n: int) -> tuple[MatchingEngine, list[bytes]]:
    engine = MatchingEngine("a", frozenset(SYMBOLS))
    for symbol in SYMBOLS:
        engine.seed(msgspec.convert(seed_orders(symbol, 500, 50), list[Order]))
    flow = OrderFlow(SYMBOLS, seed=7)
    return engine, [orjson.dumps(flow.next_order()) for _ in range(n)]


def measure(gap_s: float, bursts: int, per_burst: int, spin: bool) -> float:
    """CPU µs per order, counted inside the bursts only."""
    engine, bodies = engine_and_bodies(bursts * per_burst)
    symbols, fills, cpu = frozenset(SYMBOLS), [], 0.0
    it = iter(bodies)
    for _ in range(bursts):
        t0 = time.thread_time()
        for _ in range(per_burst):
            order = parse_order(next(it), symbols)
            fills.clear()
            engine.apply_order(order, fills)
            orjson.dumps({"orderId": order.orderId, "status": "ACCEPTED", "fills": len(fills)})
        cpu += time.thread_time() - t0
        if gap_s:
            if spin:
                end = time.perf_counter() + gap_s
                while time.perf_counter() < end:
                    pass
            else:
                time.sleep(gap_s)
    return cpu / (bursts * per_burst) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="pausing time per gap (default 3)")
    parser.add_argument("--orders-per-burst", type=int, default=1)
    parser.add_argument("--spin", action="store_true", help="spin through the pauses instead of sleeping")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; {args.orders_per_burst} order(s) per burst; pauses "
          f"{'spun' if args.spin else 'slept'}; CPU per order counted inside the bursts only")
    print(f"{'gap between bursts':>20} {'as orders/s':>12} {'CPU µs/order':>13} {'vs back to back':>16}")
    base = 0.0
    for gap_ms in GAPS_MS:
        bursts = 20_000 if not gap_ms else max(200, int(args.seconds * 1000 / gap_ms))
        us = measure(gap_ms / 1000, bursts, args.orders_per_burst, args.spin)
        base = base or us
        rate = f"{1000 / gap_ms * args.orders_per_burst:,.0f}" if gap_ms else "saturated"
        print(f"{gap_ms:>17.2f} ms {rate:>12} {us:>13.1f} {us / base:>15.2f}x")


if __name__ == "__main__":
    main()
