"""Waiting for the scrape after a phase, not a fixed sleep: a real Prometheus scraping a real /metrics page."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, start_http_server

from matchlab.errors import PrerequisiteError
from matchlab.observe.promql import PromClient
from matchlab.stack.probes import free_port
from matchlab.stack.prometheus import PrometheusServer
from matchlab.stack.prometheus_config import render_config


@pytest.fixture
def scraped(tmp_path: Path) -> Iterator[tuple[PromClient, Counter]]:
    registry = CollectorRegistry()
    counter = Counter("probe_orders", "orders", registry=registry)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        config = render_config([("matching-engine", f"127.0.0.1:{port}", {"app": "matching-engine", "shard": "a"})])
        try:
            prom = PrometheusServer(free_port(), tmp_path / "prom", config)
        except PrerequisiteError as exc:
            pytest.skip(f"prerequisite missing: {exc}")
        with prom:
            client = PromClient(prom.url)
            client.wait_for('up{app="matching-engine"} == 1', 20)
            yield client, counter
            client.close()
    finally:
        server.shutdown()
        thread.join(5)


def test_the_wait_ends_at_the_next_scrape_and_what_came_before_is_in(scraped):
    client, counter = scraped
    waits = []
    for n in range(1, 4):
        counter.inc(100)
        started = time.perf_counter()
        assert client.wait_for_scrapes(lambda labels: labels.get("app") == "matching-engine", 12.0)
        waits.append(time.perf_counter() - started)
        assert client.scalar('probe_orders_total{app="matching-engine"}') == 100 * n  # no sleep, no extra query
    print(f"waits for the next scrape: {', '.join(f'{w:.2f}' for w in waits)} s (a fixed sleep was 6 s)")
    assert all(w < 10.0 for w in waits)  # the next 5 s scrape, not the 12 s timeout (with room for a busy machine)


def test_a_target_nobody_scrapes_ends_the_wait_at_its_timeout(scraped):
    client, _ = scraped
    started = time.perf_counter()
    assert not client.wait_for_scrapes(lambda labels: labels.get("app") == "edge-gateway", 1.0)
    assert time.perf_counter() - started < 3.0
