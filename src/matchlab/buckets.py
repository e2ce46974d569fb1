"""Histogram bucket bounds, shared by the services that observe and the verdicts that read them.

The bounds of docs/internals/design.md §3.5 are a minimum. Match latency gets a fine geometric
grid (3 % apart) where p99s live, 0.4-50 ms: a relative-change criterion
(a 10 % or 5 % p99 rise) cannot resolve less than the width of the buckets
its quantiles fall in, so coarse 2 -> 5 ms buckets would make every such
verdict undecidable.
"""

from __future__ import annotations

FINE_RATIO = 1.03
FINE_FROM_S, FINE_TO_S = 0.0004, 0.05


def geometric(lo: float, hi: float, ratio: float) -> list[float]:
    out, b = [], lo
    while b <= hi:
        out.append(float(f"{b:.4g}"))  # short, stable `le` labels
        b *= ratio
    return out


MATCH_REQUIRED = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0)
MATCH_BUCKETS = tuple(sorted({*MATCH_REQUIRED, 0.0001, 0.00025, *geometric(FINE_FROM_S, FINE_TO_S, FINE_RATIO), 2.5}))
# The gateway's duration histogram: the required bounds plus a few sub-millisecond ones.
GATEWAY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5)
# The journal's write + fsync per batch: a 10 % grid where fsyncs live (0.1-100 ms), so a verdict can tell
# a disk that slowed by more than its bar from one that held (A4, the fault suite).
SYNC_BUCKETS = (0.00001, 0.000025, 0.00005, *geometric(0.0001, 0.1, 1.1))
