"""Pushing the generator's own metrics to Prometheus' remote-write receiver.

Dashboards then show the client's view beside the server's (docs/internals/design.md §4):
``loadgen_requests_total{target,status}`` (status "dropped" for requests the
in-flight cap kept from being sent) and the histogram
``loadgen_request_duration_seconds{target}``, cumulative since the run began,
pushed every few seconds and once more at the end.

The remote-write body is a snappy-compressed protobuf ``WriteRequest``. Its
three message types are small enough to encode here directly, which spares a
generated-code build step; cramjam provides snappy's block format.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import struct
import time
from collections import defaultdict

import aiohttp
import cramjam

log = logging.getLogger(__name__)

PUSH_INTERVAL_S = 5.0
PUSH_TIMEOUT_S = 5.0
BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0)
HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


# -- protobuf wire format ------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field_bytes(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def encode_timeseries(labels: dict[str, str], value: float, timestamp_ms: int) -> bytes:
    """One TimeSeries{labels (sorted by name), one Sample{value, timestamp}}."""
    out = bytearray()
    for name in sorted(labels):
        label = _field_bytes(1, name.encode()) + _field_bytes(2, labels[name].encode())
        out += _field_bytes(1, label)
    sample = _varint(1 << 3 | 1) + struct.pack("<d", value) + _varint(2 << 3 | 0) + _varint(timestamp_ms)
    out += _field_bytes(2, sample)
    return bytes(out)


def encode_write_request(series: list[tuple[dict[str, str], float]], timestamp_ms: int) -> bytes:
    body = b"".join(_field_bytes(1, encode_timeseries(labels, value, timestamp_ms)) for labels, value in series)
    return cramjam.snappy.compress_raw(body).read()


# -- what is pushed ---------------------------------------------------------------


class RemoteWriteExporter:
    """Accumulates client-side counts (a Recorder listener) and pushes them."""

    def __init__(self, url: str, labels: dict[str, str] | None = None) -> None:
        self.url = url
        self.labels = {"job": "loadgen", **(labels or {})}
        self.requests: dict[tuple[str, str], int] = defaultdict(int)
        self.buckets: dict[str, list[int]] = defaultdict(lambda: [0] * (len(BUCKETS_S) + 1))
        self.sums: dict[str, float] = defaultdict(float)
        self.pushes = 0
        self.failures = 0
        # Which part of the phase the load is in ("warm-up", "measured", "outage", ...): written as
        # loadgen_window{window=...} 1 with every push, so a query or a dashboard variable can select
        # "the measured window of B2 of run X".
        self.window = "measured"

    def __call__(self, latency_us: int | None, status: str, target: str) -> None:
        self.requests[(target, status)] += 1
        if latency_us is None:  # dropped: never sent, so no latency
            return
        seconds = latency_us / 1e6
        self.buckets[target][bisect.bisect_left(BUCKETS_S, seconds)] += 1
        self.sums[target] += seconds

    def series(self) -> list[tuple[dict[str, str], float]]:
        base = self.labels
        out: list[tuple[dict[str, str], float]] = [({**base, "__name__": "loadgen_window", "window": self.window}, 1.0)]
        for (target, status), n in sorted(self.requests.items()):
            out.append(({**base, "__name__": "loadgen_requests_total", "target": target, "status": status}, n))
        for target, counts in sorted(self.buckets.items()):
            cumulative = 0
            name = "loadgen_request_duration_seconds"
            for bound, n in zip((*BUCKETS_S, float("inf")), counts):
                cumulative += n
                le = "+Inf" if bound == float("inf") else repr(bound)
                out.append(({**base, "__name__": f"{name}_bucket", "target": target, "le": le}, cumulative))
            out.append(({**base, "__name__": f"{name}_count", "target": target}, cumulative))
            out.append(({**base, "__name__": f"{name}_sum", "target": target}, self.sums[target]))
        return out

    async def push(self, session: aiohttp.ClientSession) -> bool:
        series = self.series()
        body = encode_write_request(series, int(time.time() * 1000))
        try:
            async with session.post(self.url, data=body, headers=HEADERS) as resp:
                if resp.status // 100 != 2:
                    raise aiohttp.ClientResponseError(
                        resp.request_info, (), status=resp.status, message=(await resp.text())[:200]
                    )
        except (TimeoutError, aiohttp.ClientError) as exc:
            self.failures += 1
            if self.failures == 1:  # once: the run goes on without the client's view
                log.warning("remote write to %s failed: %s", self.url, exc)
            return False
        self.pushes += 1
        return True

    async def push_forever(self, interval_s: float = PUSH_INTERVAL_S) -> None:
        timeout = aiohttp.ClientTimeout(total=PUSH_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            try:
                while True:
                    await asyncio.sleep(interval_s)
                    await self.push(session)
            finally:
                await asyncio.shield(self.push(session))  # the final counts, once the run ends
