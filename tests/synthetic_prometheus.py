"""A real Prometheus serving synthetic series, so verdicts are tested on the exact queries they run.

Series are written as OpenMetrics with timestamps, turned into TSDB blocks by
``promtool tsdb create-blocks-from openmetrics`` (backfilling), and served by
the real ``prometheus`` binary on 127.0.0.1. A test models a system (order
rate, latency distribution, book depth, queue fill over time), and the
criteria read it as they would read a live stack.
"""

from __future__ import annotations

import math
import random
import shutil
import subprocess
from bisect import bisect_left
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from matchlab.buckets import MATCH_BUCKETS, SYNC_BUCKETS
from matchlab.observe.promql import PromClient
from matchlab.stack.probes import free_port
from matchlab.waiting import wait_until

STEP_S = 5.0
START_TIMEOUT_S = 30.0


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))


class SyntheticSeries:
    """Metric families and their timestamped samples, written as one OpenMetrics file."""

    def __init__(self) -> None:
        self._families: dict[str, tuple[str, list[str]]] = {}

    def _family(self, name: str, kind: str) -> list[str]:
        return self._families.setdefault(name, (kind, []))[1]

    def gauge(self, name: str, labels: dict[str, str], points: list[tuple[float, float]]) -> None:
        lines = self._family(name, "gauge")
        lines.extend(f"{name}{{{_labels(labels)}}} {v:.6g} {t:.3f}" for t, v in points)

    def counter(self, name: str, labels: dict[str, str], points: list[tuple[float, float]]) -> None:
        family = name.removesuffix("_total")
        lines = self._family(family, "counter")
        lines.extend(f"{family}_total{{{_labels(labels)}}} {v:.10g} {t:.3f}" for t, v in points)

    def histogram(self, name: str, labels: dict[str, str], steps: list[tuple[float, list[float]]],
                  bounds: tuple[float, ...] = MATCH_BUCKETS) -> None:
        """``steps``: (scrape time, the observations made since the previous scrape)."""
        lines = self._family(name, "histogram")
        counts = [0] * (len(bounds) + 1)
        total = 0.0
        lab = _labels(labels)
        for t, observed in steps:
            for v in observed:
                counts[bisect_left(bounds, v)] += 1
                total += v
            cumulative = 0
            for bound, c in zip([*bounds, math.inf], counts):
                cumulative += c
                le = "+Inf" if math.isinf(bound) else repr(bound)
                lines.append(f'{name}_bucket{{{lab},le="{le}"}} {cumulative} {t:.3f}')
            lines.append(f"{name}_count{{{lab}}} {cumulative} {t:.3f}")
            lines.append(f"{name}_sum{{{lab}}} {total:.9g} {t:.3f}")

    def write(self, path: Path) -> None:
        out = []
        for name, (kind, lines) in self._families.items():
            out.append(f"# TYPE {name} {kind}")
            out.extend(lines)
        out.append("# EOF")
        path.write_text("\n".join(out) + "\n")


@contextmanager
def serve(series: SyntheticSeries, workdir: Path) -> Iterator[PromClient]:
    """Backfill the series into a fresh TSDB and serve it with the real Prometheus; stop it after."""
    for tool in ("prometheus", "promtool"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not on PATH: run scripts/setup.sh (apt-get install prometheus)")
    data, db = workdir / "series.om", workdir / "tsdb"
    series.write(data)
    done = subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(data), str(db)],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"promtool could not backfill {data}: {done.stderr.strip()[-500:]}")
    config = workdir / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 5s\n")
    port = free_port()
    log = (workdir / "prometheus.log").open("w")
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={db}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=100y"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    client = PromClient(f"http://127.0.0.1:{port}")
    try:
        wait_until(lambda: client.query("vector(1)"), START_TIMEOUT_S, what="the synthetic Prometheus to answer",
                   interval=0.2)
        yield client
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


# -- a modelled shard -------------------------------------------------------------------


def step_times(start: float, end: float) -> list[float]:
    n = int((end - start) // STEP_S)
    return [start + STEP_S * (i + 1) for i in range(n)]


def model_shard(
    s: SyntheticSeries,
    shard: str,
    start: float,
    end: float,
    *,
    orders_per_s: float | Callable[[float], float],
    fills_per_order: Callable[[float], float] = lambda t: 0.6,
    latency_scale: Callable[[float], float] = lambda t: 1.0,
    matched_fraction: Callable[[float], float] = lambda t: 1.0,
    depth: Callable[[float], float] = lambda t: 2000.0,
    queue: Callable[[float], float] = lambda t: 0.0,
    rss: Callable[[float], float] = lambda t: 60e6,
    sync_scale: Callable[[float], float] | None = None,
    cpu_per_order: Callable[[float], float] | None = None,
    episode_sd: float = 0.0,
    seed: int = 1,
) -> None:
    """One shard's metrics: orders accepted at a rate, matched (a fraction of them) with a latency
    distribution (lognormal, median 2 ms, times ``latency_scale``), fills, depth, queue fill, memory;
    with ``sync_scale``, one journal sync per order (lognormal, median 0.4 ms, times the scale); with
    ``cpu_per_order``, the process's CPU seconds; with ``episode_sd``, each scrape interval's latencies are
    slower or faster together (lognormal, that spread): the episodes that make blocks differ."""
    rng = random.Random(seed)
    times = step_times(start, end)
    rate = orders_per_s if callable(orders_per_s) else (lambda t: orders_per_s)
    orders = matches = cpu = 0.0
    order_pts, match_pts, hist, syncs, cpu_pts = [], [], [], [], []
    for t in times:
        n = rate(t) * STEP_S
        orders += n
        done = round(n * matched_fraction(t))
        matches += done * fills_per_order(t)
        scale = latency_scale(t) * (rng.lognormvariate(0.0, episode_sd) if episode_sd else 1.0)
        hist.append((t, [scale * rng.lognormvariate(math.log(0.002), 0.35) for _ in range(done)]))
        if sync_scale is not None:
            syncs.append((t, [sync_scale(t) * rng.lognormvariate(math.log(0.0004), 0.35) for _ in range(round(n))]))
        order_pts.append((t, orders))
        if cpu_per_order is not None:
            cpu += n * cpu_per_order(t)
            cpu_pts.append((t, cpu))
        match_pts.append((t, math.floor(matches)))
    labels = {"shard": shard, "app": "matching-engine", "job": "matching-engine"}
    s.counter("me_orders_received_total", {**labels, "side": "BUY"}, order_pts)
    s.counter("me_matches_total", labels, match_pts)
    s.histogram("me_match_duration_seconds", labels, hist)
    if sync_scale is not None:
        s.histogram("me_wal_sync_duration_seconds", labels, syncs, SYNC_BUCKETS)
    if cpu_per_order is not None:
        s.counter("process_cpu_seconds_total", labels, cpu_pts)
    for side in ("bid", "ask"):
        s.gauge("me_orderbook_depth", {**labels, "side": side}, [(t, depth(t)) for t in times])
    s.gauge("me_ringbuffer_utilization_ratio", labels, [(t, queue(t)) for t in times])
    s.gauge("process_resident_memory_bytes", labels, [(t, rss(t)) for t in times])


def model_requests(s: SyntheticSeries, start: float, end: float, *, run: str, experiment: str, per_s: float,
                   error_ratio: float = 0.0, shards: tuple[str, ...] = ("a",), remote_errors: bool = True,
                   gateway: bool = False) -> None:
    """The load generator's remote-written counters (and the gateway's, when routed through one)."""
    times = step_times(start, end)
    ok = [(t, per_s * (1 - error_ratio) * STEP_S * (i + 1)) for i, t in enumerate(times)]
    bad = [(t, per_s * error_ratio * STEP_S * (i + 1)) for i, t in enumerate(times)]
    base = {"run": run, "experiment": experiment, "target": "a"}
    s.counter("loadgen_requests_total", {**base, "status": "200"}, ok)
    if error_ratio and remote_errors:
        s.counter("loadgen_requests_total", {**base, "status": "503"}, bad)
    if gateway:
        share = 1 / len(shards)
        for shard in shards:
            s.counter("gw_requests_total", {"shard": shard, "status": "2xx"}, [(t, v * share) for t, v in ok])
            if error_ratio:
                s.counter("gw_requests_total", {"shard": shard, "status": "5xx"}, [(t, v * share) for t, v in bad])

