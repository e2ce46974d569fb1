"""CPU per order of every process on an order's path, at fixed offered rates.

Run by hand:  python benchmarks/bench_cpu.py [--rates 200,800,1500,3000] [--seconds S] [--direct] [--coupled-events]

Brings up the embedded stack (broker, shards a/b/c, gateway, Prometheus
scraping every 5 s, exactly as the experiments run it), then for each rate:
resets and seeds every book (500 orders / 50 levels per symbol), drives an
open-model stationary flow for S seconds through the gateway to all twelve
symbols (``--direct``: straight to shard a, its four symbols), and reads each
process's CPU time (user + system, from /proc) before and after. Prints, per
rate, CPU µs per order of the load generator (this process), the gateway,
each shard (per order *it* handled), the broker and Prometheus, the total,
and the client's p50/p99.

``--src DIR`` runs the services from another checkout's ``src`` (e.g. a
``git worktree`` of the commit before a change), so before and after come
from the same sitting: run the script twice, once with ``--src``. ``--coupled-events`` starts the shards
with their own producer (EVENTS_MODE=inprocess) instead of a relay each: run it twice, once with it, for
what the relay costs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from matchlab.experiment.scaling import cpu_seconds
from matchlab.loadgen.flow import OrderFlow
from matchlab.loadgen.profile import LoadProfile
from matchlab.loadgen.runner import run_load
from matchlab.loadgen.seeding import seed_books
from matchlab.loadgen.targets import SHARD_SYMBOLS, direct_targets, flow_source, gateway_targets
from matchlab.promtext import counter_total, scrape
from matchlab.shard.config import EventsMode
from matchlab.stack.local import LocalBackend
from matchlab.stack.spec import Topology
from matchlab.stack.stack import Stack

SEED_ORDERS, SEED_LEVELS = 500, 50
# Seconds of load before the measured window, so connection set-up and first-touch costs stay out.
WARMUP_S = 2.0


def orders_received(metrics_url: str) -> float:
    return counter_total(scrape(metrics_url), "me_orders_received")


def measure(stack: Stack, pids: dict[str, int], rate: float, seconds: float, direct: bool) -> dict:
    ep = stack.endpoints
    shards = ["a"] if direct else sorted(ep.shards)
    for shard in ep.shards:
        stack.reset_shard(shard)
    seed_books(ep.shards, SHARD_SYMBOLS, SEED_ORDERS, SEED_LEVELS, token=ep.admin_token)
    symbols = [s for shard in shards for s in SHARD_SYMBOLS[shard]]
    targets = direct_targets({"a": ep.shards["a"]}) if direct else gateway_targets(ep.gateway, shards)
    flow = OrderFlow(symbols, seed=int(rate), id_prefix=f"cpu{time.time_ns()}-")
    run_load(LoadProfile.constant(rate, WARMUP_S), flow_source(flow, targets))
    before = cpu_seconds(pids)
    received0 = {s: orders_received(ep.shard_metrics[s]) for s in shards}
    result = run_load(LoadProfile.constant(rate, seconds), flow_source(flow, targets))
    after = cpu_seconds(pids)
    handled = {s: orders_received(ep.shard_metrics[s]) - received0[s] for s in shards}
    ok = max(result.ok, 1)
    row = {"rate": rate, "ok": result.ok, "errors": sum(result.errors.values()) + result.dropped,
           "p50": result.latency_ms["p50"], "p99": result.latency_ms["p99"],
           "loadgen": result.cpu_seconds / ok * 1e6}
    total = row["loadgen"]
    for name in pids:
        used = after[name] - before[name]
        total += used / ok * 1e6
        shard = name.removeprefix("me-shard-")
        # A shard's column: per order that shard handled (a third of them through the gateway).
        row[name] = used / max(handled[shard], 1) * 1e6 if shard in handled else used / ok * 1e6
    row["total"] = total
    return row


def header(columns: list[str]) -> str:
    return (f"{'orders/s':>8} {'ok':>7} {'err':>5} " + " ".join(f"{c:>10}" for c in columns)
            + f" {'total':>8} {'p50 ms':>7} {'p99 ms':>7}")


def line(row: dict, columns: list[str]) -> str:
    cells = " ".join(f"{row[c]:>10.0f}" if c in row else f"{'-':>10}" for c in columns)
    return (f"{row['rate']:>8,.0f} {row['ok']:>7} {row['errors']:>5} {cells} {row['total']:>8.0f} "
            f"{row['p50']:>7.2f} {row['p99']:>7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="200,800,1500,3000", help="orders/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per rate")
    parser.add_argument("--direct", action="store_true", help="straight to shard a instead of through the gateway")
    parser.add_argument("--src", type=Path, help="run the services from this checkout's src directory")
    parser.add_argument("--coupled-events", action="store_true",
                        help="shards publish their own events (EVENTS_MODE=inprocess), no relays")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    if args.src is not None:
        os.environ["PYTHONPATH"] = str(args.src.resolve())  # the services inherit the environment
    topology = Topology.SINGLE if args.direct else Topology.MULTI
    with tempfile.TemporaryDirectory() as tmp:
        shard_env = {"EVENTS_MODE": EventsMode.INPROCESS.value} if args.coupled_events else {}
        backend = LocalBackend(Path(tmp), shard_env=shard_env)
        with Stack(backend, topology, Path(tmp) / "run") as stack:
            pids = {name: p.pid for name, p in backend.processes().items()}
            where = "direct to shard a" if args.direct else "through the gateway to shards a, b, c"
            events = "each shard's own producer" if args.coupled_events else "a relay per shard"
            print(f"CPU µs per order, {where}, events through {events}; {os.cpu_count()} cores; services from "
                  f"{args.src or 'this checkout'}; {args.seconds:g} s per rate", flush=True)
            columns = ["loadgen", *sorted(pids)]
            print(header(columns), flush=True)
            for rate in rates:
                print(line(measure(stack, pids, rate, args.seconds, args.direct), columns), flush=True)
            print("(shard columns: CPU per order that shard handled; total: every process per order sent)")


if __name__ == "__main__":
    sys.exit(main())
