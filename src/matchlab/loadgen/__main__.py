"""``python -m matchlab.loadgen``: open-model order load from the command line.

Examples::

    # 200 orders/s for 30 s straight to shard a, books seeded first
    python -m matchlab.loadgen --shard a=http://127.0.0.1:8080 --seed-books 500/50 --rate 200 --duration 30

    # 5,000 matches/min through the gateway; the order rate is calibrated first
    python -m matchlab.loadgen --gateway http://127.0.0.1:8000 --shards a,b,c \\
        --metrics http://127.0.0.1:9091/metrics --metrics http://127.0.0.1:9092/metrics \\
        --metrics http://127.0.0.1:9093/metrics --matches-per-min 5000 --duration 300

    # a k6-style ramp: 10/s -> 50/s over 60 s, hold 60 s
    python -m matchlab.loadgen --shard a=http://127.0.0.1:8080 --start-rate 10 --stages 60:50,60:50

    # worker 1 of 3 of the same schedule (as an Indexed Job's pod runs it), its result as log lines
    python -m matchlab.loadgen --gateway http://edge-gateway:8080 --rate 90 --duration 60 \\
        --workers 3 --worker-index 1 --start-at 1767225600 --result-lines --quiet
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from matchlab.admin_auth import ADMIN_TOKEN_ENV
from matchlab.errors import MatchlabError, UsageError
from matchlab.loadgen.calibration import calibrate
from matchlab.loadgen.flow import STATIONARY, OrderFlow, hot_symbol_mix
from matchlab.loadgen.profile import LoadProfile
from matchlab.loadgen.remote_write import RemoteWriteExporter
from matchlab.loadgen.results import LoadResult
from matchlab.loadgen.runner import DEFAULT_MAX_IN_FLIGHT, OpenModelRunner
from matchlab.loadgen.seeding import seed_books
from matchlab.loadgen.segments import (
    Segment,
    SegmentProfile,
    merged_result,
    recorder_to_dict,
    result_lines,
    segment_source,
)
from matchlab.loadgen.targets import SHARD_SYMBOLS, direct_targets, flow_source, gateway_targets
from matchlab.loadgen.workers import COMPLETION_GRACE_S, run_worker_processes, start_lead_s, worker_args
from matchlab.promtext import scrape_counter
from matchlab.service import event_loop_runner

CALIBRATION_RATE = 50.0
START_TOLERANCE_S = 1.0



def parse_pairs(values: list[str], what: str) -> dict[str, str]:
    out = {}
    for value in values:
        key, sep, url = value.partition("=")
        if not sep or not key or not url:
            raise UsageError(f"{what} must look like ID=URL, got {value!r}")
        out[key] = url
    return out


def parse_stages(text: str) -> list[tuple[float, float]]:
    stages = []
    for part in text.split(","):
        duration, sep, rate = part.strip().partition(":")
        try:
            stages.append((float(duration.rstrip("s")), float(rate)))
        except ValueError:
            raise UsageError(f"--stages wants DURATION:RATE[,...] (seconds, orders/s), got {part!r}") from None
        if not sep:
            raise UsageError(f"--stages wants DURATION:RATE[,...], got {part!r}")
    return stages


def parse_seed(text: str) -> tuple[int, int]:
    count, sep, levels = text.partition("/")
    if not sep or not count.isdigit() or not levels.isdigit():
        raise UsageError(f"--seed-books wants COUNT/LEVELS (e.g. 500/50), got {text!r}")
    return int(count), int(levels)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m matchlab.loadgen",
        description="Open-model order load with client-side latency (HdrHistogram, measured from the schedule).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Examples::", 1)[1],
    )
    where = p.add_argument_group("where orders go (one of)")
    where.add_argument("--shard", action="append", default=[], metavar="ID=URL", help="send straight to a shard")
    where.add_argument("--gateway", metavar="URL", help="send through the edge gateway")
    where.add_argument("--shards", default="a,b,c", help="with --gateway: shards whose symbols to trade")
    rate = p.add_argument_group("how much (one of)")
    rate.add_argument("--rate", type=float, help="orders per second (constant)")
    rate.add_argument("--matches-per-min", type=float, help="target match rate; calibrates the order rate first")
    rate.add_argument("--stages", help="ramp: DURATION:RATE[,...] in seconds and orders/s (k6 semantics)")
    p.add_argument("--start-rate", type=float, default=0.0, help="with --stages: the rate at t=0")
    p.add_argument("--duration", type=float, default=30.0, help="seconds, for --rate/--matches-per-min")
    p.add_argument("--metrics", action="append", default=[], metavar="URL", help="shard /metrics (calibration)")
    p.add_argument("--calibrate-seconds", type=float, default=10.0)
    p.add_argument("--mix", choices=("stationary", "hot"), default="stationary")
    p.add_argument("--hot-symbol", default="TEST-ASSET-A")
    p.add_argument("--seed-books", metavar="COUNT/LEVELS",
                   help=f"seed every symbol before the run (needs the services' token in ${ADMIN_TOKEN_ENV})")
    p.add_argument("--seed", type=int, default=1, help="random seed of the order flow")
    p.add_argument("--max-in-flight", type=int, default=DEFAULT_MAX_IN_FLIGHT)
    p.add_argument("--remote-write", metavar="URL", help="Prometheus remote-write endpoint for client metrics")
    p.add_argument("--label", action="append", default=[], metavar="NAME=VALUE",
                   help="extra label on the remote-written client metrics (repeatable)")
    split = p.add_argument_group("one schedule across several workers (matchlab.loadgen.segments)")
    split.add_argument("--workers", type=int, default=1, help="how many workers share the schedule")
    split.add_argument("--worker-index", type=int, default=0, help="which of them this is (0-based)")
    split.add_argument("--start-at", type=float, help="Unix time at which every worker starts the schedule")
    split.add_argument("--processes", type=int, default=1,
                       help="run the schedule as this many worker processes on this machine and merge their results "
                            "(seeding and calibration happen once, first)")
    split.add_argument("--result-lines", action="store_true",
                       help="print the measurements (histograms included) as MATCHLAB-RESULT lines for merging")
    p.add_argument("--json", type=Path, help="write the result as JSON here")
    p.add_argument("--quiet", action="store_true", help="no per-second progress on stderr")
    return p


def progress_line(snap: dict) -> None:
    print(
        f"\r[{snap['elapsed_s']:6.1f}s / -{snap['remaining_s']:5.1f}s] target {snap['target_rate']:8.1f}/s "
        f"sent {snap['sent']:>8} ok {snap['ok']:>8} err {snap['errors']:>5} drop {snap['dropped']:>5} "
        f"p99 {snap['p99_ms']:8.2f} ms",
        end="",
        file=sys.stderr,
        flush=True,
    )


def wait_for_start(start_at: float) -> None:
    """Sleep until the common start; a worker that missed it by more than a second refuses to run late."""
    late = time.time() - start_at
    if late > START_TOLERANCE_S:
        raise UsageError(f"started {late:.1f} s after --start-at: its share of the schedule would be late")
    time.sleep(max(0.0, -late))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (MatchlabError, ValueError) as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    if bool(args.shard) == bool(args.gateway):
        raise UsageError("give either --shard ID=URL (repeatable) or --gateway URL")
    if sum(x is not None for x in (args.rate, args.matches_per_min, args.stages)) != 1:
        raise UsageError("give exactly one of --rate, --matches-per-min, --stages")
    try:
        segment = Segment(args.worker_index, args.workers)
    except ValueError as exc:
        raise UsageError(f"--workers/--worker-index: {exc}") from None
    if segment.count > 1 and (args.matches_per_min is not None or args.seed_books):
        raise UsageError("with --workers > 1, seed and calibrate once before the workers start; "
                         "give the workers --rate or --stages")
    if args.processes < 1 or (args.processes > 1 and segment.count > 1):
        raise UsageError("--processes N (N >= 1) starts its own workers: give it without --workers")
    labels = parse_pairs(args.label, "--label")
    if segment.count > 1:
        labels["worker"] = str(segment.index)
    if args.gateway:
        shards = [s.strip() for s in args.shards.split(",") if s.strip()]
        unknown = [s for s in shards if s not in SHARD_SYMBOLS]
        if unknown:
            raise UsageError(f"unknown shard ids {unknown}; known: {sorted(SHARD_SYMBOLS)}")
        targets = gateway_targets(args.gateway, shards)
        seed_bases = {s: args.gateway for s in shards}
    else:
        shard_urls = parse_pairs(args.shard, "--shard")
        unknown = [s for s in shard_urls if s not in SHARD_SYMBOLS]
        if unknown:
            raise UsageError(f"unknown shard ids {unknown}; known: {sorted(SHARD_SYMBOLS)}")
        targets = direct_targets(shard_urls)
        seed_bases = shard_urls
    symbols = sorted(targets)
    mix = hot_symbol_mix(args.hot_symbol) if args.mix == "hot" else STATIONARY

    if args.seed_books:
        count, levels = parse_seed(args.seed_books)
        token = os.environ.get(ADMIN_TOKEN_ENV)
        if not token:
            raise UsageError(
                f"--seed-books needs the services' admin token in the {ADMIN_TOKEN_ENV} environment variable")
        seeded = seed_books(seed_bases, SHARD_SYMBOLS, count, levels, token=token, via_gateway=bool(args.gateway))
        print(f"seeded {seeded}", file=sys.stderr)

    # Workers of one schedule must send the very same orders (ids included); they share the seed and the
    # start time, which no other run shares. A lone process takes a fresh id prefix of its own.
    shared = f"w{args.seed}-{int(args.start_at * 1000):x}-" if args.start_at is not None else None
    flow = OrderFlow(symbols, mix, seed=args.seed, id_prefix=shared)
    source = flow_source(flow, targets)
    calibration = None
    if args.matches_per_min is not None:
        if not args.metrics:
            raise UsageError("--matches-per-min needs --metrics URL of every shard to calibrate against")
        calibration = calibrate(source, lambda: scrape_counter(args.metrics), CALIBRATION_RATE, args.calibrate_seconds)
        order_rate = calibration.order_rate_for(args.matches_per_min)
        print(
            f"calibrated: {calibration.fills_per_order:.3f} fills/order -> {order_rate:.1f} orders/s "
            f"for {args.matches_per_min:.0f} matches/min",
            file=sys.stderr,
        )
        profile = LoadProfile.constant(order_rate, args.duration)
    elif args.stages:
        profile = LoadProfile.ramping(args.start_rate, parse_stages(args.stages))
    else:
        profile = LoadProfile.constant(args.rate, args.duration)

    if args.processes > 1:
        return report(args, run_in_processes(args, profile, labels), calibration)
    if segment.count > 1:
        profile, source = SegmentProfile(profile, segment), segment_source(source, segment)
    exporter = RemoteWriteExporter(args.remote_write, labels) if args.remote_write else None
    if args.start_at is not None:
        wait_for_start(args.start_at)
    runner = OpenModelRunner(args.max_in_flight, progress=None if args.quiet else progress_line, exporter=exporter)
    result = event_loop_runner()(runner.run(profile, source))
    if not args.quiet:
        print(file=sys.stderr)
    if args.result_lines:
        for line in result_lines(recorder_to_dict(runner.recorder, result.cpu_seconds)):
            print(line)
    return report(args, result, calibration)


def report(args: argparse.Namespace, result: LoadResult, calibration) -> int:
    if calibration is not None:
        result.extra["calibration"] = calibration.to_dict()
    print(result.summary_line())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result.to_dict(), indent=1))
    return 0


def run_in_processes(args: argparse.Namespace, profile: LoadProfile, labels: dict[str, str]) -> LoadResult:
    """The schedule split across ``--processes`` worker processes started together; one merged result."""
    n = args.processes
    route = ["--gateway", args.gateway, "--shards", args.shards] if args.gateway else [
        arg for pair in args.shard for arg in ("--shard", pair)]
    extra = ["--max-in-flight", str(max(1, math.ceil(args.max_in_flight / n))), "--hot-symbol", args.hot_symbol]
    lead = start_lead_s(n)
    start_at = time.time() + lead
    argvs = [worker_args(route, profile, n, str(i), start_at, seed=args.seed, mix=args.mix,
                         remote_write=args.remote_write, labels=labels, extra=extra) for i in range(n)]
    if not args.quiet:
        print(f"{n} worker processes, starting together in {lead:.1f} s", file=sys.stderr)
    parts = run_worker_processes(argvs, lead + profile.duration_s + COMPLETION_GRACE_S)
    return merged_result(parts, profile)


if __name__ == "__main__":
    sys.exit(main())
