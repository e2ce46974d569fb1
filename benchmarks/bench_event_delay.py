"""How long a MATCH_EXECUTED event takes from the match to the broker and to a reader.

Run by hand:  python benchmarks/bench_event_delay.py [--rate R] [--seconds S] [--src DIR]

Brings up the single-shard embedded stack, seeds shard a's books, reads the
``matches`` topic from its end in a thread (fetch wait 5 ms) while an
open-model flow runs at R orders/s, and prints percentiles of:
  - match -> produce: the producer's CreateTime minus the event's own
    ``timestamp`` (taken when the order matched): the journal wait before an
    event may leave (docs/internals/design.md §3.3) — what lazy group commit adds;
  - match -> reader: arrival at the reader minus the event's timestamp, which
    adds the producer's linger, the broker and the fetch.
Millisecond resolution (both clocks are epoch milliseconds on this machine).
``--src DIR`` runs the services from another checkout's ``src``, for before/after.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import orjson
from confluent_kafka import OFFSET_END, Consumer, TopicPartition

from matchlab.loadgen.flow import OrderFlow
from matchlab.loadgen.profile import LoadProfile
from matchlab.loadgen.runner import run_load
from matchlab.loadgen.seeding import seed_books
from matchlab.loadgen.targets import SHARD_SYMBOLS, direct_targets, flow_source
from matchlab.stack.broker import PARTITIONS
from matchlab.stack.local import LocalBackend
from matchlab.stack.spec import Topology
from matchlab.stack.stack import Stack


def read_delays(bootstrap: str, stop: threading.Event, ready: threading.Event, out: list[tuple[int, int]]) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"delay-{time.time_ns()}",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 5})
    consumer.assign([TopicPartition("matches", p, OFFSET_END) for p in range(PARTITIONS)])
    consumer.poll(1.0)  # joins the partitions before the load starts
    ready.set()
    try:
        while not stop.is_set():
            msg = consumer.poll(0.1)
            if msg is None or msg.error():
                continue
            arrived = time.time_ns() // 1_000_000
            matched = orjson.loads(msg.value())["timestamp"]
            out.append((msg.timestamp()[1] - matched, arrived - matched))
    finally:
        consumer.close()


def percentiles(values: list[int]) -> str:
    values = sorted(values)
    pick = lambda q: values[min(len(values) - 1, int(q * len(values)))]
    return f"p50 {pick(0.5)} ms, p99 {pick(0.99)} ms, max {values[-1]} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0, help="orders/s to shard a")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--src", type=Path, help="run the services from this checkout's src directory")
    args = parser.parse_args()
    if args.src is not None:
        os.environ["PYTHONPATH"] = str(args.src.resolve())
    with tempfile.TemporaryDirectory() as tmp, Stack(LocalBackend(Path(tmp)), Topology.SINGLE, Path(tmp) / "run") as stack:
        ep = stack.endpoints
        seed_books(ep.shards, SHARD_SYMBOLS, 500, 50, token=ep.admin_token)
        delays: list[tuple[int, int]] = []
        stop, ready = threading.Event(), threading.Event()
        reader = threading.Thread(target=read_delays, args=(ep.broker, stop, ready, delays), daemon=True)
        reader.start()
        ready.wait(10)
        flow = OrderFlow(SHARD_SYMBOLS["a"], seed=5, id_prefix=f"delay{time.time_ns()}-")
        result = run_load(LoadProfile.constant(args.rate, args.seconds), flow_source(flow, direct_targets({"a": ep.shards["a"]})))
        time.sleep(2.0)  # the last events' linger and fetch
        stop.set()
        reader.join(5)
        print(f"{args.rate:g} orders/s for {args.seconds:g} s ({result.ok} acknowledged), {len(delays)} match events read; "
              f"services from {args.src or 'this checkout'}")
        if delays:
            print(f"  match -> produce: {percentiles([d[0] for d in delays])}")
            print(f"  match -> reader:  {percentiles([d[1] for d in delays])}")


if __name__ == "__main__":
    main()
