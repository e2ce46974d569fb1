"""What one small durable append costs at a moderate rate, and whether fdatasync or a preallocated file cut it.

Run by hand:  python benchmarks/bench_fsync.py [--dir DIR] [--records N] [--gap-ms G] [--repeat R]

The shard's journal appends each commit group and syncs it before the ACK. At 500 orders/s every
order is its own group, so a sync per order; on this machine the shard's event-loop thread blocked
about three times per order in it. The usual cures for a write-ahead log: ``fdatasync`` instead of
``fsync`` (no timestamp update), and a file written full of zeros beforehand so an append never
changes the file's size or allocates (PostgreSQL's WAL segments): then the sync needs no filesystem
journal commit. This measures each, one 200-byte record per ``--gap-ms`` (2 ms: 500/s), against no
sync at all, and prints the process CPU per record (user + system), voluntary context switches per
record (times the process blocked) and the append's p50 / p99. Put ``--dir`` on the filesystem the
journal uses (default: a temporary folder under the current directory).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable

RECORD = b"x" * 200
MODES: dict[str, tuple[bool, Callable[[int], None] | None]] = {  # name -> (preallocated, sync)
    "no sync": (False, None),
    "append + fsync": (False, os.fsync),
    "append + fdatasync": (False, os.fdatasync),
    "preallocated + fsync": (True, os.fsync),
    "preallocated + fdatasync": (True, os.fdatasync),
}


def usage() -> tuple[float, int]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_nvcsw


def measure(folder: str, preallocated: bool, sync: Callable[[int], None] | None, records: int,
            gap_s: float) -> tuple[float, float, float, float]:
    """(CPU µs, voluntary switches, p50 ms, p99 ms) per record."""
    path = os.path.join(folder, "journal.bench")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        if preallocated:
            os.write(fd, b"\0" * (records * len(RECORD) + 4096))
            os.fsync(fd)
            os.lseek(fd, 0, os.SEEK_SET)
        latencies = []
        cpu0, switches0 = usage()
        for _ in range(records):
            time.sleep(gap_s)
            t0 = time.perf_counter()
            os.write(fd, RECORD)
            if sync is not None:
                sync(fd)
            latencies.append(time.perf_counter() - t0)
        cpu1, switches1 = usage()
    finally:
        os.close(fd)
        os.unlink(path)
    latencies.sort()
    return (1e6 * (cpu1 - cpu0) / records, (switches1 - switches0) / records,
            1e3 * latencies[len(latencies) // 2], 1e3 * latencies[int(len(latencies) * 0.99)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default=None, help="where the file goes (default: a temporary folder here)")
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--gap-ms", type=float, default=2.0, help="pause before each record (2 ms: 500/s)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds over all modes (the table shows medians)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir or ".") as folder:
        rows: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in MODES}
        for _ in range(args.repeat):
            for name, (preallocated, sync) in MODES.items():
                rows[name].append(measure(folder, preallocated, sync, args.records, args.gap_ms / 1000))
    print(f"{args.records} records of {len(RECORD)} bytes, one per {args.gap_ms:g} ms, medians of {args.repeat} rounds")
    print(f"{'mode':<26}{'CPU µs/record':>14}{'switches/record':>17}{'p50 ms':>9}{'p99 ms':>9}")
    base = statistics.median(r[0] for r in rows["no sync"])
    for name, results in rows.items():
        cpu, switches, p50, p99 = (statistics.median(col) for col in zip(*results, strict=True))
        print(f"{name:<26}{cpu:>14.1f}{switches:>17.2f}{p50:>9.3f}{p99:>9.3f}   (+{cpu - base:.1f} µs over no sync)")


if __name__ == "__main__":
    main()
