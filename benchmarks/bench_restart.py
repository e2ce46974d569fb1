"""Restart time vs orders journaled, with and without snapshots, the disk the journal uses, and what
snapshots cost the event loop.

Builds a journal of N orders in-process (the real pipeline, fsync off to
build it quickly), then starts a real shard process on it and times spawn ->
``/ready`` answering 200, and checks books, match counter and id window equal
the state before the restart.

While it builds, a watcher task sleeps 1 ms at a time and records how late
each wake-up is (the loop's lag: how long something held the loop), and
each snapshot's own time on the loop (capturing the books and the id
window's newest ids) is timed. Orders go in batches of 32, so the building
itself holds the loop about a millisecond at a time and a snapshot's stall
would stand out.

    .venv/bin/python benchmarks/bench_restart.py --orders 250000 1000000 2000000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from time import perf_counter

import httpx
import msgspec

from matchlab.admin_auth import new_token
from matchlab.loadgen.flow import OrderFlow, seed_orders
from matchlab.shard.config import DEFAULT_SNAPSHOT_EVERY, DEFAULT_SYMBOLS
from matchlab.shard.engine import MatchingEngine
from matchlab.shard.event_modes import RelayedEvents
from matchlab.shard.journal import JournalLayout
from matchlab.shard.metrics import ShardMetrics
from matchlab.shard.orders import Order
from matchlab.shard.pipeline import OrderPipeline
from matchlab.stack.probes import free_port
from matchlab.stack.process import ManagedProcess

SYMBOLS = DEFAULT_SYMBOLS["a"].split(",")
BATCH = 32
NO_SNAPSHOTS = 10**12
TICK_S = 0.001
STALL_S = 0.005


async def watch_loop(lags: list[float], stop: asyncio.Event) -> None:
    """How late each 1 ms sleep wakes up: the longest anything held the loop meanwhile."""
    while not stop.is_set():
        started = perf_counter()
        await asyncio.sleep(TICK_S)
        lags.append(perf_counter() - started - TICK_S)


def spread(values: list[float]) -> str:
    if not values:
        return "none"
    values = sorted(values)
    pick = lambda q: values[min(len(values) - 1, int(q * len(values)))] * 1000
    return f"p50 {pick(0.5):.2f} p99.9 {pick(0.999):.2f} max {values[-1] * 1000:.2f} ms"


async def build(directory: Path, orders: int, snapshot_every: int) -> dict:
    """The journal (no events: KAFKA_BOOTSTRAP is empty for the restarted shard too) and the state it holds."""
    metrics = ShardMetrics("a")
    pipeline = OrderPipeline(
        MatchingEngine("a", frozenset(SYMBOLS)), metrics, RelayedEvents(relay=False), 1 << 20,
        snapshot_every=snapshot_every,
    )
    await pipeline.start(directory, fsync=False)
    seed = [o for s in SYMBOLS for o in seed_orders(s, 2000, 40)]
    await pipeline.submit_seed(msgspec.convert(seed, list[Order]))
    flow = OrderFlow(SYMBOLS, seed=5)
    captures: list[float] = []
    pipeline.snapshots.observe_capture = captures.append  # each snapshot's time on the loop
    lags: list[float] = []
    stop = asyncio.Event()
    watcher = asyncio.get_running_loop().create_task(watch_loop(lags, stop))
    sent = 0
    while sent < orders:
        n = min(BATCH, orders - sent)
        batch = [msgspec.convert(flow.next_order(), Order) for _ in range(n)]
        await asyncio.gather(*(pipeline.submit_order(o, 0.0) for o in batch))
        sent += n
        await asyncio.sleep(0)  # the watcher's turn
    await pipeline.drain()
    stop.set()
    await watcher
    state = {
        "books": {s: b.snapshot() for s, b in pipeline.engine.books.items()},
        "matches": pipeline.engine.match_count,
        "ids": len(pipeline.ids),
        "loop": f"snapshots {len(captures)}, their loop time {spread(captures)}; loop lag {spread(lags)}, "
                f"{sum(1 for lag in lags if lag > STALL_S)} of {len(lags):,} wake-ups over {STALL_S * 1000:g} ms",
    }
    await pipeline.abandon()  # a kill -9: restart must cope with the journal as a crash leaves it
    return state


def restart(directory: Path, state: dict, log: Path) -> float:
    http, metrics = free_port(), free_port()
    token = new_token()
    env = {"SHARD_ID": "a", "HTTP_PORT": str(http), "METRICS_PORT": str(metrics), "WAL_PATH": str(directory),
           "KAFKA_BOOTSTRAP": "", "ADMIN_TOKEN": token}
    proc = ManagedProcess("shard-a", [sys.executable, "-m", "matchlab.shard"], log, env)
    started = time.perf_counter()
    proc.start()
    try:
        url = f"http://127.0.0.1:{http}"
        while True:
            try:
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if not proc.running():
                raise SystemExit(f"shard exited: {proc.log_tail(20)}")
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
        stats = httpx.get(f"{url}/admin/stats", headers={"Authorization": f"Bearer {token}"}).json()
        books = {s: httpx.get(f"{url}/book/{s}").json() for s in SYMBOLS}
        assert books == state["books"], "books differ after the restart"
        assert stats["matches"] == state["matches"], (stats, state["matches"])
        assert stats["orderIdWindow"] == state["ids"], (stats, state["ids"])
        return elapsed
    finally:
        proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, nargs="+", default=[250_000, 1_000_000, 2_000_000])
    parser.add_argument("--snapshot-every", type=int, default=None, help="records (default: the shard's)")
    parser.add_argument("--only-snapshots", action="store_true", help="skip the (slow) journal without snapshots")
    args = parser.parse_args()
    variants = [("snapshots", args.snapshot_every or DEFAULT_SNAPSHOT_EVERY)]
    if not args.only_snapshots:
        variants.append(("no snapshots", NO_SNAPSHOTS))
    for orders in args.orders:
        for label, every in variants:
            with tempfile.TemporaryDirectory() as tmp:
                directory = Path(tmp) / "journal"
                t0 = time.perf_counter()
                state = asyncio.run(build(directory, orders, every))
                built = time.perf_counter() - t0
                disk = JournalLayout(directory, "wal.log").disk_bytes()
                elapsed = restart(directory, state, Path(tmp) / "shard.log")
                replay_line = [line for line in (Path(tmp) / "shard.log").read_text().splitlines() if "replayed" in line]
                print(
                    f"{orders:>9,} orders, {label:<12}: restart to /ready {elapsed:5.2f} s; "
                    f"journal on disk {disk / 1e6:7.1f} MB; {state['matches']:,} matches, {state['ids']:,} ids "
                    f"(built in {built:.0f} s) | {replay_line[-1].split(': ', 1)[-1] if replay_line else ''}\n"
                    f"    while building: {state['loop']}",
                    flush=True,
                )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
