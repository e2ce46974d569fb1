"""One shard saturated by wrk (an outside C client): orders/s and the shard's CPU per order.

Run by hand:  python benchmarks/bench_shard_wrk.py [--seconds S] [--connections C] [--src DIR]

Brings up the single-shard embedded stack (journal with fsync, events to the
broker, Prometheus scraping), seeds shard a's books (500/50 per symbol),
writes a stationary two-sided flow of unique orders to a file that a wrk Lua
script replays (wrk -t1 -cC), and prints wrk's orders/s, the non-2xx count
and the shard's, its relay's (when it has one) and the broker's CPU µs per order. Needs ``wrk`` (Debian: apt-get
install wrk). ``--src DIR`` runs the services from another checkout's src.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from matchlab.experiment.scaling import cpu_seconds
from matchlab.loadgen.flow import OrderFlow
from matchlab.loadgen.seeding import seed_books
from matchlab.loadgen.targets import SHARD_SYMBOLS
from matchlab.stack.local import LocalBackend
from matchlab.stack.spec import Topology
from matchlab.stack.stack import Stack

# Replays one body per line; wrk's Lua state is per thread, hence one thread.
LUA = """
local bodies, i = {}, 0
for line in io.lines("%(bodies)s") do bodies[#bodies + 1] = line end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i %% #bodies + 1
  return wrk.format(nil, "/orders", nil, bodies[i])
end
"""
# Enough distinct orders that none repeats within a run at 20,000 orders/s.
ORDERS_PER_SECOND_CEILING = 20_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--src", type=Path, help="run the services from this checkout's src directory")
    args = parser.parse_args()
    wrk = shutil.which("wrk")
    if wrk is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    if args.src is not None:
        os.environ["PYTHONPATH"] = str(args.src.resolve())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bodies = work / "bodies.jsonl"
        flow = OrderFlow(SHARD_SYMBOLS["a"], seed=11, id_prefix=f"wrk{time.time_ns()}-")
        with open(bodies, "wb") as f:
            f.writelines(orjson.dumps(flow.next_order()) + b"\n" for _ in range(ORDERS_PER_SECOND_CEILING * (args.seconds + 2)))
        script = work / "orders.lua"
        script.write_text(LUA % {"bodies": bodies})
        backend = LocalBackend(work)
        with Stack(backend, Topology.SINGLE, work / "run") as stack:
            ep = stack.endpoints
            seed_books(ep.shards, SHARD_SYMBOLS, 500, 50, token=ep.admin_token)
            procs = backend.processes()
            pids = {"shard": procs["me-shard-a"].pid, "broker": procs["broker"].pid}
            if "me-relay-a" in procs:
                pids["relay"] = procs["me-relay-a"].pid
            before = cpu_seconds(pids)
            out = subprocess.run([wrk, "-t1", f"-c{args.connections}", f"-d{args.seconds}s", "-s", str(script),
                                  ep.shards["a"]], capture_output=True, text=True, check=True).stdout
            after = cpu_seconds(pids)
            used = {name: after[name] - before[name] for name in pids}
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    print(f"wrk -t1 -c{args.connections} {args.seconds}s to shard a (services from {args.src or 'this checkout'}): "
          f"{rate:,.0f} orders/s, {non2xx} non-2xx of {total:,}; CPU µs/order: "
          + ", ".join(f"{name} {seconds / total * 1e6:.0f}" for name, seconds in used.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
