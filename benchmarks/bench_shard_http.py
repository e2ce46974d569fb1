"""One shard over HTTP with every feature on (journal with fsync, events through its relay, metrics).

Run by hand:  python benchmarks/bench_shard_http.py [--seconds S]

Starts a Tansu broker, a shard and its event relay on 127.0.0.1, seeds 500 orders/50 levels
per symbol, then prints:
  - saturation orders/s with a closed-loop keep-alive client;
  - at 17, 170 and 1,700 orders/s (open model): server-side p50/p99 of
    me_match_duration_seconds and me_wal_append_duration_seconds, client ACK p99;
  - the same 1,700 orders/s run with fsync off (WAL_FSYNC=false), to show
    what durable acknowledgement costs.
The client runs in this process, on the same 2 cores as the shard and broker.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from matchlab.admin_auth import new_token
from matchlab.loadgen.flow import OrderFlow
from matchlab.loadgen.profile import LoadProfile
from matchlab.loadgen.runner import run_load
from matchlab.loadgen.saturation import saturate
from matchlab.loadgen.seeding import seed_books
from matchlab.loadgen.targets import SHARD_SYMBOLS, direct_targets, flow_source
from matchlab.promtext import bucket_delta, histogram_buckets, histogram_quantile, scrape
from matchlab.relay.config import RelayConfig
from matchlab.stack.broker import TansuBroker
from matchlab.stack.probes import HttpProbe, free_port
from matchlab.stack.process import ManagedProcess
from matchlab.stack.spec import Wiring, shard_config

RATES = (17, 170, 1700)
TOKEN = new_token()  # the shard's admin token, for seeding


class ShardWithRelay:
    """A shard and its relay, stopped together."""

    def __init__(self, shard: ManagedProcess, relay: ManagedProcess) -> None:
        self.shard, self.relay = shard, relay

    def stop(self) -> None:
        self.shard.stop()
        self.relay.stop()


def start_shard(workdir: Path, bootstrap: str, fsync: bool, tag: str) -> tuple[ShardWithRelay, str, str]:
    http, metrics = free_port(), free_port()
    wiring = Wiring(http, metrics, kafka_bootstrap=bootstrap, wal_path=workdir / f"wal-{tag}.log")
    config = shard_config("a", wiring, fsync=fsync, admin_token=TOKEN)
    proc = ManagedProcess(f"shard-{tag}", [sys.executable, "-m", "matchlab.shard"], workdir / f"shard-{tag}.log",
                          config.to_env())
    relay_port = free_port()
    relay = ManagedProcess(f"relay-{tag}", [sys.executable, "-m", "matchlab.relay"], workdir / f"relay-{tag}.log",
                           RelayConfig.for_shard(config, relay_port).to_env())
    both = ShardWithRelay(proc, relay)
    url = f"http://127.0.0.1:{http}"
    try:
        proc.start()
        relay.start()
        proc.wait_ready(HttpProbe(f"{url}/health"), 20)
        relay.wait_ready(HttpProbe(f"http://127.0.0.1:{relay_port}/ready"), 20)
        seed_books({"a": url}, SHARD_SYMBOLS, 500, 50, token=TOKEN)
    except BaseException:
        both.stop()
        raise
    return both, url, f"http://127.0.0.1:{metrics}/metrics"


def fixed_rate(url: str, metrics_url: str, rate: float, seconds: float, seed: int) -> str:
    source = flow_source(OrderFlow(SHARD_SYMBOLS["a"], seed=seed), direct_targets({"a": url}))
    before = scrape(metrics_url)
    result = run_load(LoadProfile.constant(rate, seconds), source)
    after = scrape(metrics_url)
    match = bucket_delta(histogram_buckets(after, "me_match_duration_seconds"), histogram_buckets(before, "me_match_duration_seconds"))
    wal = bucket_delta(histogram_buckets(after, "me_wal_append_duration_seconds"), histogram_buckets(before, "me_wal_append_duration_seconds"))
    ms = lambda q, b: histogram_quantile(q, b) * 1000
    return (
        f"{rate:>6} orders/s: match p50 {ms(0.5, match):6.3f} ms p99 {ms(0.99, match):6.3f} ms | "
        f"wal append p99 {ms(0.99, wal):6.3f} ms | client ACK p50 {result.latency_ms['p50']:6.3f} "
        f"p99 {result.latency_ms['p99']:6.3f} ms | ok {result.ok} errors {sum(result.errors.values())} "
        f"dropped {result.dropped}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="per fixed-rate run")
    parser.add_argument("--saturation-seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    print(f"one shard over HTTP, {os.cpu_count()} cores, client in-process; journal+fsync, events, metrics on")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        with TansuBroker(free_port(), workdir / "broker.log") as broker:
            proc, url, metrics_url = start_shard(workdir, broker.bootstrap, fsync=True, tag="fsync")
            try:
                source = flow_source(OrderFlow(SHARD_SYMBOLS["a"], seed=5), direct_targets({"a": url}))
                sat = saturate(source, args.concurrency, args.saturation_seconds)
                print(
                    f"saturation: {sat.ok_rate:,.0f} orders/s accepted ({sat.statuses}) with {args.concurrency} "
                    f"keep-alive connections; client CPU {sat.client_cpu_s / max(sat.requests, 1) * 1e6:.0f} µs/order"
                )
                for i, rate in enumerate(RATES):
                    print(fixed_rate(url, metrics_url, rate, args.seconds, seed=10 + i))
            finally:
                proc.stop()
            proc, url, metrics_url = start_shard(workdir, broker.bootstrap, fsync=False, tag="nofsync")
            try:
                print("fsync off:", fixed_rate(url, metrics_url, RATES[-1], args.seconds, seed=99))
            finally:
                proc.stop()


if __name__ == "__main__":
    main()
