"""Restart time vs orders journaled, with and without snapshots, and the disk the journal uses.

Builds a journal of N orders in-process (the real pipeline, fsync off to
build it quickly), then starts a real shard process on it and times spawn ->
``/ready`` answering 200, and checks books, match counter and id window equal
the state before the restart.

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

import httpx
import msgspec

from matchlab.loadgen.flow import OrderFlow, seed_orders
from matchlab.shard.config import DEFAULT_SNAPSHOT_EVERY, DEFAULT_SYMBOLS
from matchlab.shard.engine import MatchingEngine
from matchlab.shard.events import NullPublisher
from matchlab.shard.journal import JournalLayout
from matchlab.shard.metrics import ShardMetrics
from matchlab.shard.orders import Order
from matchlab.shard.pipeline import OrderPipeline
from matchlab.stack.probes import free_port
from matchlab.stack.process import ManagedProcess

SYMBOLS = DEFAULT_SYMBOLS["a"].split(",")
CONCURRENT = 512
NO_SNAPSHOTS = 10**12


async def build(directory: Path, orders: int, snapshot_every: int) -> dict:
    pipeline = OrderPipeline(
        MatchingEngine("a", frozenset(SYMBOLS)), ShardMetrics("a"), NullPublisher(), 1 << 20,
        snapshot_every=snapshot_every,
    )
    await pipeline.start(directory, fsync=False)
    seed = [o for s in SYMBOLS for o in seed_orders(s, 2000, 40)]
    await pipeline.submit_seed(msgspec.convert(seed, list[Order]))
    flow = OrderFlow(SYMBOLS, seed=5)
    sent = 0
    while sent < orders:
        n = min(CONCURRENT, orders - sent)
        batch = [msgspec.convert(flow.next_order(), Order) for _ in range(n)]
        await asyncio.gather(*(pipeline.submit_order(o, 0.0) for o in batch))
        sent += n
        pipeline._journal_mark()  # what the 1 s marker does at real rates: the mark stays current
    await pipeline.drain()
    state = {
        "books": {s: b.snapshot() for s, b in pipeline.engine.books.items()},
        "matches": pipeline.engine.match_count,
        "ids": len(pipeline.ids),
    }
    # A kill -9 (no stop snapshot): restart must cope with the journal as a crash leaves it.
    pipeline._task.cancel()
    pipeline._marker.cancel()
    if pipeline._snapshot_task is not None:
        await pipeline._snapshot_task
    await pipeline.wal.close()
    return state


def restart(directory: Path, state: dict, log: Path) -> float:
    http, metrics = free_port(), free_port()
    env = {"SHARD_ID": "a", "HTTP_PORT": str(http), "METRICS_PORT": str(metrics), "WAL_PATH": str(directory),
           "KAFKA_BOOTSTRAP": ""}
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
        stats = httpx.get(f"{url}/admin/stats").json()
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
                    f"(built in {built:.0f} s) | {replay_line[-1].split(': ', 1)[-1] if replay_line else ''}",
                    flush=True,
                )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
