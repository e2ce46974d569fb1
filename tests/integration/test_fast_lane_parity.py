"""The fast lane answers POST /orders as aiohttp's path does: same statuses, bodies and metrics.

Each test runs one sequence of raw requests against a service with the fast lane (the default) and
one with ``HTTP_FAST_LANE=false``, and compares what a client sees and what the metrics count.
"""

from __future__ import annotations

import json
import socket

import pytest
from prometheus_client.parser import text_string_to_metric_families

from matchlab.promtext import scrape

pytestmark = pytest.mark.integration


def order(order_id: str, quantity: int = 5, symbol: str = "TEST-ASSET-A") -> bytes:
    return json.dumps({"orderId": order_id, "symbol": symbol, "side": "BUY", "type": "LIMIT",
                       "price": 14000, "quantity": quantity}).encode()


def post(body: bytes, content_type: str | None = "application/json", length: int | None = None) -> bytes:
    ct = f"Content-Type: {content_type}\r\n" if content_type is not None else ""
    return (f"POST /orders HTTP/1.1\r\nHost: x\r\n{ct}Content-Length: {len(body) if length is None else length}"
            f"\r\n\r\n").encode() + body


def sequence(prefix: str) -> list[bytes]:
    """Every outcome a client can meet at /orders short of a full queue or a broken journal."""
    return [
        post(order(f"{prefix}1")),                                          # 200
        post(order(f"{prefix}1")),                                          # 200, duplicate
        post(order(f"{prefix}1", quantity=6)),                              # 409
        post(b'{"orderId": "x", '),                                         # 400, bad JSON
        post(order(f"{prefix}2", quantity=0)),                              # 400, invalid field
        post(order(f"{prefix}3", symbol="NOPE")),                           # 400, unknown symbol
        post(order(f"{prefix}4"), "text/plain"),                            # 415
        post(order(f"{prefix}5"), None),                                    # 415, no content type
        post(order(f"{prefix}6"), "application/json; charset=utf-8"),       # 200
        post(b""),                                                          # 400, empty body
    ]


def read_reply(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a whole reply: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:])}
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, body


def seen(url: str, requests: list[bytes], prefix: str, fast: bool) -> list[tuple]:
    """What a client sees for each request on one keep-alive connection, ids and times normalised."""
    host, port = url.removeprefix("http://").split(":")
    outcomes = []
    lanes = set()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        for request in requests:
            sock.sendall(request)
            status, headers, body = read_reply(sock)
            lanes.add("server" not in headers)  # aiohttp names itself; the fast lane does not
            doc = json.loads(body)
            doc.pop("timestamp", None)
            text = json.dumps(doc, sort_keys=True).replace(prefix, "ID-")
            outcomes.append((status, headers["content-type"], headers.get("connection"), headers.get("retry-after"),
                             text))
    assert lanes == {fast}, f"expected every reply from the {'fast lane' if fast else 'aiohttp'}"
    return outcomes


def oversized(url: str) -> tuple[int, str]:
    """A declared body over the limit: its head alone is sent."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(post(b"", length=1_000_000))
        status, _headers, body = read_reply(sock)
    return status, json.loads(body)["reason"]


# Observed by the clock, not per request: how many a scrape finds depends on how long the service has run.
CLOCK_DRIVEN = ("me_loop_lag_seconds",)


def counts(url: str, prefix: str) -> dict[tuple, float]:
    """Every counter and histogram-count sample of a service's own metrics (not the runtime's, nor the clock's)."""
    found = {}
    for family in text_string_to_metric_families(scrape(url)):
        if not family.name.startswith(prefix) or family.name in CLOCK_DRIVEN:
            continue
        for s in family.samples:
            if s.name.endswith(("_total", "_count")) and not s.name.endswith("_created"):
                found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def test_the_shard_answers_and_counts_alike_on_both_paths(shard_factory):
    fast, plain = shard_factory("a"), shard_factory("a", HTTP_FAST_LANE="false")
    assert seen(fast.url, sequence("fast-"), "fast-", True) == seen(plain.url, sequence("plain-"), "plain-", False)
    assert oversized(fast.url) == oversized(plain.url)
    assert oversized(fast.url)[0] == 413
    fast_counts, plain_counts = counts(fast.metrics_url, "me_"), counts(plain.metrics_url, "me_")
    assert fast_counts[("me_orders_received_total", (("shard", "a"), ("side", "BUY")))] == 2
    assert fast_counts == plain_counts


def test_the_gateway_answers_and_counts_alike_on_both_paths(shard_factory, gateway_factory):
    shard = shard_factory("a")
    fast = gateway_factory({"a": shard.url}, SHARD_SYMBOLS_MAP="a=TEST-ASSET-A")
    plain = gateway_factory({"a": shard.url}, SHARD_SYMBOLS_MAP="a=TEST-ASSET-A", HTTP_FAST_LANE="false")
    assert seen(fast.url, sequence("fast-"), "fast-", True) == seen(plain.url, sequence("plain-"), "plain-", False)
    assert oversized(fast.url) == oversized(plain.url)
    fast_counts, plain_counts = counts(fast.metrics_url, "gw_"), counts(plain.metrics_url, "gw_")
    assert fast_counts[("gw_requests_total", (("shard", "none"), ("status", "4xx")))] >= 5
    assert fast_counts == plain_counts
