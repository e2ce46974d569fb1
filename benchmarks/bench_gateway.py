"""The edge gateway: added latency per hop, and saturation through it to three shards.

Run by hand:  python benchmarks/bench_gateway.py [--seconds S] [--no-events] [--workers 1,2]

Starts a broker (unless --no-events), shards a, b, c and the gateway on
127.0.0.1, seeds every book (500/50), then prints:
  - at a fixed open-model rate (default 1,000 orders/s) to shard a's symbols:
    client p50/p99 direct to shard a, then through the gateway, and the
    difference (the gateway's cost per hop), measured back to back;
  - saturation orders/s through the gateway to all twelve symbols with a
    closed-loop keep-alive client, and the gateway's CPU per proxied order;
  - with ``--workers 1,2``: both, once per GATEWAY_WORKERS value (a fresh
    gateway each), saturation as a ratio to the first.
Everything, client included, shares this machine's cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from matchlab.admin_auth import new_token
from matchlab.experiment import scaling
from matchlab.loadgen.flow import OrderFlow
from matchlab.loadgen.profile import LoadProfile
from matchlab.loadgen.runner import run_load
from matchlab.loadgen.saturation import saturate
from matchlab.loadgen.seeding import seed_books
from matchlab.loadgen.targets import SHARD_SYMBOLS, direct_targets, flow_source, gateway_targets
from matchlab.stack.broker import TansuBroker
from matchlab.stack.probes import HttpProbe, free_port
from matchlab.stack.process import ManagedProcess
from matchlab.stack.spec import Wiring, gateway_config, shard_config

TOKEN = new_token()  # the services' admin token, for seeding

def start(stack: ExitStack, name: str, module: str, env: dict, workdir: Path, port: int) -> ManagedProcess:
    proc = ManagedProcess(name, [sys.executable, "-m", module], workdir / f"{name}.log", env)
    stack.enter_context(proc)
    proc.wait_ready(HttpProbe(f"http://127.0.0.1:{port}/health"), 20)
    return proc


def cpu_seconds(proc: ManagedProcess) -> float:
    """The gateway's CPU: its own and, with GATEWAY_WORKERS, its workers' (``scaling.cpu_seconds``)."""
    return sum(scaling.cpu_seconds({"gateway": proc.pid}).values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--no-events", action="store_true", help="run the shards without a broker")
    parser.add_argument("--workers", default="1", help="GATEWAY_WORKERS values to compare, comma-separated (e.g. 1,2)")
    args = parser.parse_args()
    worker_counts = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        bootstrap = ""
        if not args.no_events:
            bootstrap = stack.enter_context(TansuBroker(free_port(), workdir / "broker.log")).bootstrap
        shard_urls = {}
        for shard in "abc":
            http = free_port()
            wiring = Wiring(http, free_port(), kafka_bootstrap=bootstrap, wal_path=workdir / f"wal-{shard}.log")
            env = shard_config(shard, wiring, admin_token=TOKEN).to_env()
            start(stack, f"shard-{shard}", "matchlab.shard", env, workdir, http)
            shard_urls[shard] = f"http://127.0.0.1:{http}"
        seed_books(shard_urls, SHARD_SYMBOLS, 500, 50, token=TOKEN)
        print(f"gateway benchmark, {os.cpu_count()} cores, events {'off' if args.no_events else 'on'}")
        profile = LoadProfile.constant(args.rate, args.seconds)
        symbols = SHARD_SYMBOLS["a"]
        direct = run_load(profile, flow_source(OrderFlow(symbols, seed=1), direct_targets({"a": shard_urls["a"]})))
        print(f"{args.rate:,.0f}/s direct to shard a: p50 {direct.latency_ms['p50']:.3f} ms "
              f"p99 {direct.latency_ms['p99']:.3f} ms (ok {direct.ok}, errors {sum(direct.errors.values())})")
        baseline = None
        for workers in worker_counts:
            with ExitStack() as one:
                gw_port = free_port()
                config = replace(gateway_config(Wiring(gw_port, free_port(), shard_urls=shard_urls)), workers=workers)
                gateway = start(one, f"gateway-{workers}", "matchlab.gateway", config.to_env(), workdir, gw_port)
                gw_url = f"http://127.0.0.1:{gw_port}"
                via = run_load(profile, flow_source(OrderFlow(symbols, seed=2), gateway_targets(gw_url, ["a"])))
                print(f"[{workers} worker(s)] {args.rate:,.0f}/s through the gateway: p50 {via.latency_ms['p50']:.3f} "
                      f"ms p99 {via.latency_ms['p99']:.3f} ms (ok {via.ok}, errors {sum(via.errors.values())}); added: "
                      f"p50 {via.latency_ms['p50'] - direct.latency_ms['p50']:+.3f} ms, "
                      f"p99 {via.latency_ms['p99'] - direct.latency_ms['p99']:+.3f} ms")
                all_symbols = [s for shard in "abc" for s in SHARD_SYMBOLS[shard]]
                source = flow_source(OrderFlow(all_symbols, seed=3), gateway_targets(gw_url, ["a", "b", "c"]))
                cpu0 = cpu_seconds(gateway)
                sat = saturate(source, args.concurrency, args.seconds)
                gw_cpu = cpu_seconds(gateway) - cpu0
                baseline = baseline or sat.ok_rate
                print(f"[{workers} worker(s)] saturation through the gateway to 3 shards: {sat.ok_rate:,.0f} orders/s "
                      f"({sat.ok_rate / baseline:.2f}x the first row; {sat.statuses}), {args.concurrency} connections; "
                      f"gateway CPU {gw_cpu / max(sat.requests, 1) * 1e6:.0f} µs/order, "
                      f"client CPU {sat.client_cpu_s / max(sat.requests, 1) * 1e6:.0f} µs/order", flush=True)


if __name__ == "__main__":
    main()
