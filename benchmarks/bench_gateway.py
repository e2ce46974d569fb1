"""The edge gateway: added latency per hop, and saturation through it to three shards.

Run by hand:  python benchmarks/bench_gateway.py [--seconds S] [--no-events]

Starts a broker (unless --no-events), shards a, b, c and the gateway on
127.0.0.1, seeds every book (500/50), then prints:
  - at a fixed open-model rate (default 1,000 orders/s) to shard a's symbols:
    client p50/p99 direct to shard a, then through the gateway, and the
    difference (the gateway's cost per hop), measured back to back;
  - saturation orders/s through the gateway to all twelve symbols with a
    closed-loop keep-alive client, and the gateway's CPU per proxied order.
Everything, client included, shares this machine's cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import psutil

from matchlab.admin_auth import new_token
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
    t = psutil.Process(proc.pid).cpu_times()
    return t.user + t.system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--no-events", action="store_true", help="run the shards without a broker")
    args = parser.parse_args()
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
        gw_port = free_port()
        gw_env = gateway_config(Wiring(gw_port, free_port(), shard_urls=shard_urls)).to_env()
        gateway = start(stack, "gateway", "matchlab.gateway", gw_env, workdir, gw_port)
        gw_url = f"http://127.0.0.1:{gw_port}"
        seed_books(shard_urls, SHARD_SYMBOLS, 500, 50, token=TOKEN)
        print(f"gateway benchmark, {os.cpu_count()} cores, events {'off' if args.no_events else 'on'}")

        profile = LoadProfile.constant(args.rate, args.seconds)
        symbols = SHARD_SYMBOLS["a"]
        direct = run_load(profile, flow_source(OrderFlow(symbols, seed=1), direct_targets({"a": shard_urls["a"]})))
        via = run_load(profile, flow_source(OrderFlow(symbols, seed=2), gateway_targets(gw_url, ["a"])))
        for label, r in (("direct ", direct), ("gateway", via)):
            print(f"{args.rate:,.0f}/s {label}: p50 {r.latency_ms['p50']:.3f} ms p99 {r.latency_ms['p99']:.3f} ms "
                  f"(ok {r.ok}, errors {sum(r.errors.values())}, dropped {r.dropped})")
        print(f"added by the gateway: p50 {via.latency_ms['p50'] - direct.latency_ms['p50']:+.3f} ms, "
              f"p99 {via.latency_ms['p99'] - direct.latency_ms['p99']:+.3f} ms")

        all_symbols = [s for shard in "abc" for s in SHARD_SYMBOLS[shard]]
        source = flow_source(OrderFlow(all_symbols, seed=3), gateway_targets(gw_url, ["a", "b", "c"]))
        cpu0 = cpu_seconds(gateway)
        sat = saturate(source, args.concurrency, args.seconds)
        gw_cpu = cpu_seconds(gateway) - cpu0
        print(f"saturation through the gateway to 3 shards: {sat.ok_rate:,.0f} orders/s ({sat.statuses}), "
              f"{args.concurrency} connections; gateway CPU {gw_cpu / max(sat.requests, 1) * 1e6:.0f} µs/order, "
              f"client CPU {sat.client_cpu_s / max(sat.requests, 1) * 1e6:.0f} µs/order")


if __name__ == "__main__":
    main()
