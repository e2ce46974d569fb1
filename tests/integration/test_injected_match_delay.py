"""INJECT_MATCH_DELAY_MS: a fixed delay on the measured match latency, for showing that comparisons detect it.

Two real shards, one with the delay: the mean of ``me_match_duration_seconds`` (its _sum over its
_count, exact where the buckets are coarse) rises by about the delay, every order is still matched,
and the shard says loudly at start-up that its figures carry an injected delay.
"""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.integration

DELAY_MS = 2
PAIRS = 40  # sequential crossing pairs per round: 80 orders, 40 matches
ROUNDS = 3


def crossing_pair(tag: str, i: int) -> list[dict]:
    base = {"symbol": "TEST-ASSET-A", "type": "LIMIT", "price": 10_000, "quantity": 1}
    return [{**base, "orderId": f"{tag}-s{i}", "side": "SELL"}, {**base, "orderId": f"{tag}-b{i}", "side": "BUY"}]


def match_figures(metrics_url: str) -> tuple[float, float, float]:
    """(sum of match latencies in s, how many, matches) from the shard's /metrics."""
    samples = {s.name: s.value for f in text_string_to_metric_families(httpx.get(metrics_url, timeout=5).text)
               for s in f.samples if not s.labels.get("le")}
    return (samples["me_match_duration_seconds_sum"], samples["me_match_duration_seconds_count"],
            samples["me_matches_total"])


def mean_match_latencies_ms(shards: list, first: int, pairs: int) -> list[float]:
    """Crossing pairs sent to each shard in turn (so a busy moment of this shared machine hits both alike);
    each shard's mean match latency over those orders once every one is counted."""
    before = [match_figures(shard.metrics_url) for shard in shards]
    clients = [shard.client() for shard in shards]
    try:
        for i in range(first, first + pairs):
            for n, c in enumerate(clients):
                for order in crossing_pair(f"s{n}", i):
                    assert c.post("/orders", json=order).status_code == 200
    finally:
        for c in clients:
            c.close()
    means = []
    for shard, (total0, count0, matches0) in zip(shards, before):
        total, count, matches = total0, count0, matches0
        for _ in range(50):  # matching trails the acknowledgement by the delay: wait until every order is counted
            total, count, matches = match_figures(shard.metrics_url)
            if count - count0 >= 2 * pairs:
                break
            time.sleep(0.05)
        assert (count - count0, matches - matches0) == (2 * pairs, pairs), "every order matched once, each pair into one"
        means.append((total - total0) / (count - count0) * 1000)
    return means


def test_the_injected_delay_adds_to_the_measured_match_latency_and_loses_nothing(shard_factory):
    plain, delayed = shard_factory("a"), shard_factory("a", INJECT_MATCH_DELAY_MS=str(DELAY_MS))
    # Three rounds, judged by their median: one stall of this shared machine (a slow fsync, another
    # process's burst) can move a round's mean by more than the delay.
    rounds = [mean_match_latencies_ms([plain, delayed], k * PAIRS, PAIRS) for k in range(ROUNDS)]
    added = sorted(delayed_ms - base_ms for base_ms, delayed_ms in rounds)[ROUNDS // 2]
    assert 0.5 * DELAY_MS <= added <= DELAY_MS + 8, f"mean match latency per round (plain, delayed): {rounds}"
    log = delayed.process.log_path.read_text()
    assert f"INJECT_MATCH_DELAY_MS={DELAY_MS}" in log and "INJECT_MATCH_DELAY_MS" not in plain.process.log_path.read_text()


def test_a_concurrent_burst_through_the_delay_is_matched_whole(shard_factory):
    """Groups of many orders wait together and are released oldest first: nothing is lost or matched twice."""
    shard = shard_factory("a", INJECT_MATCH_DELAY_MS=str(DELAY_MS))
    orders = [o for i in range(100) for o in crossing_pair("burst", i)]
    with shard.client() as c, concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda o: c.post("/orders", json=o).status_code, orders))
    assert codes == [200] * len(orders)
    for _ in range(100):
        _, count, matches = match_figures(shard.metrics_url)
        if count >= len(orders):
            break
        time.sleep(0.05)
    assert (count, matches) == (len(orders), len(orders) / 2)
