"""The open-model load generator against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import time

import httpx
import pytest

from matchlab.loadgen.calibration import calibrate
from matchlab.loadgen.flow import OrderFlow
from matchlab.loadgen.profile import LoadProfile
from matchlab.loadgen.remote_write import RemoteWriteExporter
from matchlab.loadgen.runner import json_request, run_load
from matchlab.loadgen.seeding import seed_books
from matchlab.loadgen.targets import SHARD_SYMBOLS, direct_targets, flow_source
from matchlab.promtext import scrape, scrape_counter

pytestmark = pytest.mark.integration


def constant_source(url: str):
    return lambda: json_request("t", f"{url}/orders", {"x": 1})


@pytest.mark.parametrize("use_timerfd", [True, False], ids=["timerfd", "pacer-thread"])
def test_achieved_rate_within_one_percent_at_200_per_second(trivial_server, use_timerfd):
    url = trivial_server()
    result = run_load(LoadProfile.constant(200, 10), constant_source(url), use_timerfd=use_timerfd)
    assert result.scheduled == 2000
    assert result.ok == 2000 and result.dropped == 0 and not result.errors
    assert result.achieved_rate == pytest.approx(200, rel=0.01)
    per_second = [s.sent for s in result.timeline]
    assert len(per_second) == 10 and all(195 <= n <= 205 for n in per_second), per_second
    assert result.schedule_error_ms["p50"] < 1.0, result.schedule_error_ms  # sub-millisecond pacing either way
    print(f"\n200/s: {result.summary_line()} cpu {result.cpu_us_per_request:.0f} µs/request")


def test_ramp_rate_follows_its_stages(trivial_server):
    url = trivial_server()
    profile = LoadProfile.ramping(20, [(4, 200), (4, 200), (4, 50)])
    result = run_load(profile, constant_source(url))
    assert result.dropped == 0 and not result.errors
    for s in result.timeline:
        expected = (profile.rate_at(s.second) + profile.rate_at(s.second + 1 - 1e-9)) / 2
        assert s.sent == pytest.approx(expected, abs=2), (s.second, s.sent, expected)


def test_stall_shows_in_open_model_p99_but_not_in_a_closed_loop(trivial_server):
    """Coordinated omission: every request scheduled during a 1 s stall waits for it."""
    stall_after, stall_for = 3.0, 1.0
    url = trivial_server("--stall-after", str(stall_after), "--stall-for", str(stall_for))
    result = run_load(LoadProfile.constant(100, 8), constant_source(url))
    stalled = sum(s.scheduled for s in result.timeline if stall_after <= s.second < stall_after + stall_for)
    assert stalled / result.scheduled >= 0.01
    assert result.latency_ms["p99"] >= 0.8 * stall_for * 1000, result.latency_ms
    assert result.ok == result.scheduled

    # The same stall seen by a closed loop: one request waits, the rest never get sent.
    url2 = trivial_server("--stall-after", str(stall_after), "--stall-for", str(stall_for))
    latencies = []
    with httpx.Client(timeout=5) as client:
        end = time.monotonic() + 8
        while time.monotonic() < end:
            t0 = time.monotonic()
            client.post(f"{url2}/orders", json={"x": 1})
            latencies.append(time.monotonic() - t0)
            time.sleep(max(0.0, 0.01 - (time.monotonic() - t0)))
    latencies.sort()
    closed_p99 = latencies[int(0.99 * len(latencies))]
    assert closed_p99 < 0.25 * result.latency_ms["p99"] / 1000, (closed_p99, result.latency_ms["p99"])


def test_in_flight_cap_counts_dropped_requests(trivial_server):
    url = trivial_server("--stall-after", "1", "--stall-for", "2")
    result = run_load(LoadProfile.constant(100, 5), constant_source(url), max_in_flight=5)
    assert result.dropped > 50  # ~200 requests fell in the stall with only 5 allowed in flight
    assert result.scheduled == result.sent + result.dropped == 500
    assert sum(s.dropped for s in result.timeline) == result.dropped


def test_flow_keeps_a_real_book_bounded_while_matching(shard_factory):
    shard = shard_factory("a")
    seed_books({"a": shard.url}, SHARD_SYMBOLS, 100, 10, token=shard.token)
    source = flow_source(OrderFlow(SHARD_SYMBOLS["a"], seed=21), direct_targets({"a": shard.url}))
    depths: list[float] = []
    before = scrape_counter([shard.metrics_url])

    def sample_depth(_snapshot: dict) -> None:
        text = scrape(shard.metrics_url)
        depths.append(sum(_gauge(text, "me_orderbook_depth", side) for side in ("bid", "ask")))

    result = run_load(LoadProfile.constant(100, 30), source, progress=sample_depth)
    time.sleep(0.5)
    matches = scrape_counter([shard.metrics_url]) - before
    assert result.ok == 3000
    assert len(depths) >= 25
    assert max(depths) <= 1000, depths  # seeded 400; bounded, not growing with the 3,000 orders
    assert min(depths[len(depths) // 2 :]) > 0, depths  # and never drained
    assert matches / result.ok > 0.4, (matches, result.ok)
    print(f"\ndepth over time: {depths}; {matches / result.ok:.2f} fills/order")


def _gauge(text: str, name: str, side: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and f'side="{side}"' in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{{side={side}}} missing")


def test_calibration_converts_match_rate_to_order_rate(shard_factory):
    shard = shard_factory("a")
    seed_books({"a": shard.url}, SHARD_SYMBOLS, 500, 50, token=shard.token)
    source = flow_source(OrderFlow(SHARD_SYMBOLS["a"], seed=8), direct_targets({"a": shard.url}))
    cal = calibrate(source, lambda: scrape_counter([shard.metrics_url]), order_rate=100, duration_s=3)
    assert cal.orders_ok == 300
    assert 0.3 < cal.fills_per_order < 3
    assert cal.order_rate_for(1000) == pytest.approx(1000 / 60 / cal.fills_per_order)


def test_client_metrics_reach_prometheus_by_remote_write(trivial_server, prometheus):
    prom = prometheus
    url = trivial_server()
    exporter = RemoteWriteExporter(prom.remote_write_url, {"run": "t1"})
    result = run_load(LoadProfile.constant(50, 3), constant_source(url), exporter=exporter)
    assert exporter.pushes >= 1 and exporter.failures == 0

    def query(q: str) -> list:
        return httpx.get(f"{prom.url}/api/v1/query", params={"query": q}, timeout=5).json()["data"]["result"]

    rows = query('loadgen_requests_total{job="loadgen",run="t1",status="200"}')
    assert [float(r["value"][1]) for r in rows] == [result.ok]
    count = query('loadgen_request_duration_seconds_count{run="t1"}')
    assert float(count[0]["value"][1]) == result.ok
