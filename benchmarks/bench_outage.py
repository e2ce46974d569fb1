"""What a broker outage changes in a shard: CPU per thread, syscalls, the journal's timings.

Run by hand:  python benchmarks/bench_outage.py [--rate R] [--seconds S] [--coupled [--outbox-bound N]] [--src DIR]

Brings up the single-shard embedded stack (journal with fsync, events to the Tansu broker), seeds
shard a's books, drives an open-model flow of R orders/s straight to shard a, and compares two
windows of S seconds: the broker running, then the broker frozen (SIGSTOP, as A4 and ``matchlab
broker pause`` do). Per window and per order it prints:

- CPU µs of every event-path process (the shard, its relay when there is one) and of the shard's
  threads: the event loop, librdkafka's (``rdk:*``), the other Python threads (journal committer,
  executor);
- futex, epoll_wait/epoll_pwait, write, fsync and context switches per thread group, counted by
  ``perf stat`` on the syscall tracepoints (no ptrace: the process runs at full speed);
- the journal: write, fsync and hand-back (committer done -> loop resumes) p99, commits run inline
  on the loop vs on the committer thread (``me_wal_commits_total{mode}``), append-to-durable p99;
- match latency p99 (``me_match_duration_seconds``), the shard's garbage collections and memory.

``--coupled`` starts the shard with the Kafka producer in its own process (EVENTS_MODE=inprocess)
instead of the relay; ``--src DIR`` runs the services from another checkout's src. Needs ``perf``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import psutil

from matchlab.loadgen.flow import OrderFlow
from matchlab.loadgen.profile import LoadProfile
from matchlab.loadgen.runner import run_load
from matchlab.loadgen.seeding import seed_books
from matchlab.loadgen.targets import SHARD_SYMBOLS, direct_targets, flow_source
from matchlab.promtext import bucket_delta, counter_total, histogram_buckets, histogram_quantile, scrape
from matchlab.shard.config import DEFAULT_EVENTS_OUTBOX_BOUND
from matchlab.stack.local import LocalBackend
from matchlab.stack.spec import Topology
from matchlab.stack.stack import Stack

SYSCALLS = ("futex", "epoll_wait", "epoll_pwait", "write", "fsync")
EVENTS = [f"syscalls:sys_enter_{s}" for s in SYSCALLS] + ["context-switches"]
WARMUP_S = 8.0
HISTOGRAMS = {"match p99": "me_match_duration_seconds", "journal append->durable p99": "me_wal_append_duration_seconds",
              "write p99": "me_wal_write_duration_seconds", "fsync p99": "me_wal_fsync_duration_seconds",
              "hand-back p99": "me_wal_handback_duration_seconds"}


def thread_group(pid: int, tid: int, comm: str) -> str:
    if tid == pid:
        return "loop"
    return "rdk" if comm.startswith("rdk:") else "py-threads"


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds by thread group of one process, from /proc (threads that ended are lost: short windows)."""
    out: dict[str, float] = defaultdict(float)
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
            comm = (task / "comm").read_text().strip()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        out[thread_group(pid, int(task.name), comm)] += (int(fields[11]) + int(fields[12])) / tick
    return dict(out)


def perf_counts(pid: int, seconds: float, out: dict) -> None:
    """Syscall and context-switch counts per thread group over ``seconds``, by ``perf stat --per-thread``."""
    res = subprocess.run(["perf", "stat", "--per-thread", "-x", ";", "-e", ",".join(EVENTS), "-p", str(pid),
                          "--", "sleep", str(seconds)], check=False, capture_output=True, text=True)
    counts: dict[tuple[str, str], float] = defaultdict(float)
    for line in res.stderr.splitlines():
        parts = line.split(";")
        if len(parts) < 4 or not parts[1].replace(".", "").isdigit():
            continue
        comm_tid, value, event = parts[0], float(parts[1]), parts[3]
        comm, _, tid = comm_tid.rpartition("-")
        name = event.removeprefix("syscalls:sys_enter_")
        counts[(thread_group(pid, int(tid), comm), name)] += value
    out.update(counts)


class Window:
    """Every figure of one window, as deltas between its start and its end."""

    def __init__(self, stack: Stack, pids: dict[str, int], seconds: float) -> None:
        self.stack, self.pids, self.seconds = stack, pids, seconds
        self.metrics = stack.endpoints.shard_metrics["a"]

    def run(self, during=None) -> dict:
        before_text = scrape(self.metrics)
        before_cpu = {n: psutil.Process(p).cpu_times() for n, p in self.pids.items()}
        before_threads = {n: thread_cpu(p) for n, p in self.pids.items()}
        perf: dict[str, dict] = {n: {} for n in self.pids}
        workers = [threading.Thread(target=perf_counts, args=(p, self.seconds, perf[n])) for n, p in self.pids.items()]
        for w in workers:
            w.start()
        if during is not None:
            during()
        for w in workers:
            w.join(self.seconds + 30)
        after_text = scrape(self.metrics)
        orders = max(counter_total(after_text, "me_orders_received") - counter_total(before_text, "me_orders_received"), 1)
        row: dict = {"orders": orders}
        for n, p in self.pids.items():
            t1, t0 = psutil.Process(p).cpu_times(), before_cpu[n]
            row[f"{n} CPU µs/order"] = (t1.user + t1.system - t0.user - t0.system) / orders * 1e6
            threads = thread_cpu(p)
            for group in sorted(threads):
                row[f"  {n} {group} CPU µs/order"] = (threads[group] - before_threads[n].get(group, 0.0)) / orders * 1e6
            for (group, event), value in sorted(perf[n].items()):
                row[f"  {n} {group} {event}/order"] = value / orders
        for label, name in HISTOGRAMS.items():
            delta = bucket_delta(histogram_buckets(after_text, name), histogram_buckets(before_text, name))
            row[f"{label} ms"] = histogram_quantile(0.99, delta) * 1000 if delta else float("nan")
        for generation in ("0", "1", "2"):
            done = (counter_total(after_text, "python_gc_collections", generation=generation)
                    - counter_total(before_text, "python_gc_collections", generation=generation))
            row[f"shard GC collections gen {generation} /s"] = done / self.seconds
        rss = [float(line.split()[-1]) for line in after_text.splitlines() if line.startswith("process_resident_memory_bytes")]
        row["shard RSS MB at the end"] = rss[0] / 1e6 if rss else float("nan")
        for mode in ("inline", "thread"):
            done = counter_total(after_text, "me_wal_commits", mode=mode) - counter_total(before_text, "me_wal_commits", mode=mode)
            row[f"journal commits {mode}/order"] = done / orders
        return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=300.0, help="orders/s to shard a")
    parser.add_argument("--seconds", type=float, default=20.0, help="per window")
    parser.add_argument("--coupled", action="store_true", help="the Kafka producer inside the shard (EVENTS_MODE=inprocess)")
    parser.add_argument("--outbox-bound", type=int, default=DEFAULT_EVENTS_OUTBOX_BOUND, metavar="N",
                        help="with --coupled: events awaiting the broker past which orders wait (EVENTS_OUTBOX_BOUND; "
                             "0: unbounded, the design measured before the bound)")
    parser.add_argument("--src", type=Path, help="run the services from this checkout's src directory")
    args = parser.parse_args()
    if shutil.which("perf") is None:
        print("perf is not installed: apt-get install linux-perf", file=sys.stderr)
        return 2
    if args.src is not None:
        os.environ["PYTHONPATH"] = str(args.src.resolve())
    shard_env = {"EVENTS_MODE": "inprocess", "EVENTS_OUTBOX_BOUND": str(args.outbox_bound)} if args.coupled else {}
    with tempfile.TemporaryDirectory() as tmp:
        backend = LocalBackend(Path(tmp), shard_env=shard_env)
        with Stack(backend, Topology.SINGLE, Path(tmp) / "run") as stack:
            ep = stack.endpoints
            seed_books(ep.shards, SHARD_SYMBOLS, 500, 50, token=ep.admin_token)
            procs = backend.processes()
            pids = {n.removeprefix("me-").removesuffix("-a"): p.pid for n, p in procs.items()
                    if n in ("me-shard-a", "me-relay-a")}
            flow = OrderFlow(SHARD_SYMBOLS["a"], seed=7, id_prefix=f"outage{time.time_ns()}-")
            total = WARMUP_S + 2 * args.seconds + 4
            result: dict = {}
            load = threading.Thread(target=lambda: result.update(load=run_load(
                LoadProfile.constant(args.rate, total), flow_source(flow, direct_targets({"a": ep.shards["a"]})))))
            load.start()
            try:
                time.sleep(WARMUP_S)
                window = Window(stack, pids, args.seconds)
                running = window.run()
                backend.pause_broker()
                try:
                    frozen = window.run()
                finally:
                    backend.resume_broker()
            finally:
                load.join(total + 60)
    mode = "in-process producer (EVENTS_MODE=inprocess)" if args.coupled else "events through the relay"
    print(f"shard a at {args.rate:g} orders/s direct, {args.seconds:g} s per window, {os.cpu_count()} cores; {mode}; "
          f"services from {args.src or 'this checkout'}; load {result['load'].summary_line()}")
    print(f"{'':<44} {'broker up':>12} {'broker frozen':>14}")
    for key in [*running, *(k for k in frozen if k not in running)]:
        a, b = running.get(key, float("nan")), frozen.get(key, float("nan"))
        print(f"{key:<44} {a:>12.2f} {b:>14.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
