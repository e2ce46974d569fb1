"""The load generator itself: highest sustainable open-model rate, scheduling error, CPU per request.

Run by hand:  python benchmarks/bench_loadgen.py [--seconds S]

Against a trivial local HTTP server (another process), steps the arrival rate
up until more than 1 % of scheduled requests are dropped or the run cannot
keep its rate, and reports the scheduling error (actual minus scheduled send
time) at 1,000 requests/s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from matchlab.loadgen.profile import LoadProfile
from matchlab.loadgen.runner import json_request, run_load
from matchlab.stack.probes import HttpProbe, free_port
from matchlab.stack.process import ManagedProcess

RATES = (1000, 2000, 3000, 4000, 5000, 6000, 8000)
MAX_DROPPED = 0.01


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--pacer", choices=("timerfd", "thread", "both"), default="timerfd",
                        help="what wakes the loop at each due time: a timerfd (Linux), the pacer thread, or both in turn")
    parser.add_argument("--rates", default=",".join(map(str, RATES)), help="requests/s, comma-separated")
    args = parser.parse_args()
    pacers = ("timerfd", "thread") if args.pacer == "both" else (args.pacer,)
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        server = ManagedProcess(
            "trivial", [sys.executable, "-m", "matchlab.loadgen.trivial_server", "--port", str(port)], Path(tmp) / "s.log"
        )
        with server:
            server.wait_ready(HttpProbe(f"http://127.0.0.1:{port}/health"), 10)
            url = f"http://127.0.0.1:{port}/orders"
            print(f"load generator, one process, {os.cpu_count()} cores (server shares them), {args.seconds:.0f} s per rate")
            best = {pacer: 0 for pacer in pacers}
            for rate, pacer in ((int(r), p) for r in args.rates.split(",") for p in pacers):
                if best[pacer] is None:
                    continue  # that pacer already fell behind at a lower rate
                r = run_load(LoadProfile.constant(rate, args.seconds), lambda: json_request("t", url, {"orderId": "x"}),
                             use_timerfd=pacer == "timerfd")
                dropped = r.dropped / r.scheduled
                ok = dropped < MAX_DROPPED and r.achieved_rate >= 0.99 * rate and not r.errors
                print(
                    f"{pacer:>7} {rate:>6}/s: achieved {r.achieved_rate:8.1f}/s dropped {dropped:6.2%} errors {sum(r.errors.values())} "
                    f"| sched err p50 {r.schedule_error_ms['p50']:.3f} p99 {r.schedule_error_ms['p99']:.3f} ms "
                    f"| latency p99 {r.latency_ms['p99']:.2f} ms | CPU {r.cpu_us_per_request:.0f} µs/request"
                    f"{'' if ok else '  <- not sustained'}"
                )
                if ok:
                    best[pacer] = rate
                else:
                    print(f"{pacer}: highest sustained rate {best[pacer]:,}/s with < {MAX_DROPPED:.0%} dropped")
                    best[pacer] = None
            for pacer, rate in best.items():
                if rate is not None:
                    print(f"{pacer}: sustained every rate asked, up to {rate:,}/s")


if __name__ == "__main__":
    main()
