"""Reading a ``/metrics`` page directly: counters, histogram buckets, quantiles.

For benchmarks and calibration, which need a service's own numbers without a
Prometheus server in between. ``histogram_quantile`` interpolates within a
bucket exactly as PromQL's function of the same name does.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Iterator, Mapping

import httpx
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

SCRAPE_TIMEOUT_S = 5.0
_local = threading.local()


def scrape(url: str) -> str:
    # One client per thread, kept: ``httpx.get`` builds a client (and its TLS context) per call, 50-60 ms of
    # a scaling step's reads where a kept client takes 7 ms. Per thread, so no pool is shared across threads.
    client = getattr(_local, "client", None)
    if client is None:
        client = _local.client = httpx.Client(timeout=SCRAPE_TIMEOUT_S)
    return client.get(url).text


def families(text: str, name: str) -> Iterator[Metric]:
    """The page's metric families named ``name`` (and others sharing its prefix), parsed from their lines only.

    A shard's page has ~400 lines; parsing all of them for one family took 13-17 ms a read.
    """
    keep = (name, f"# HELP {name}", f"# TYPE {name}")
    lines = [line for line in text.splitlines() if line.startswith(keep)]
    return (f for f in text_string_to_metric_families("\n".join(lines) + "\n") if f.name == name)


def counter_total(text: str, name: str, **labels: str) -> float:
    """Sum of a counter's samples (matching ``labels``) on one page."""
    total = 0.0
    for family in families(text, name):
        for s in family.samples:
            if s.name == f"{name}_total" and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def scrape_counter(metrics_urls: Iterable[str], name: str = "me_matches") -> float:
    """Sum a counter over several ``/metrics`` pages."""
    return sum(counter_total(scrape(url), name) for url in metrics_urls)


def histogram_buckets(text: str, name: str) -> dict[float, float]:
    """Cumulative bucket counts by upper bound, summed over label sets."""
    out: dict[float, float] = {}
    for family in families(text, name):
        for s in family.samples:
            if s.name == f"{name}_bucket":
                le = float(s.labels["le"])
                out[le] = out.get(le, 0.0) + s.value
    return out


def bucket_delta(after: Mapping[float, float], before: Mapping[float, float]) -> dict[float, float]:
    return {le: after[le] - before.get(le, 0.0) for le in after}


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float:
    """PromQL's histogram_quantile over cumulative buckets; NaN without observations."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return math.nan
    total = buckets[bounds[-1]]
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return prev_bound  # PromQL returns the highest finite bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return bounds[-1]
