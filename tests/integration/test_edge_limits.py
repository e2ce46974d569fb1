"""The edge guard on real shard and gateway processes: phase timeouts, the connection cap, shedding."""

from __future__ import annotations

import re
import socket
import threading
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from matchlab.promtext import counter_total, scrape

pytestmark = pytest.mark.integration

ORDER = b'{"orderId":"e1","symbol":"TEST-ASSET-A","side":"BUY","type":"LIMIT","price":14000,"quantity":5}'


def sample(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    raise AssertionError(f"{name} {labels} not exported")


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def read_until_closed(sock: socket.socket, limit_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took."""
    started, data = time.monotonic(), b""
    sock.settimeout(limit_s)
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data, time.monotonic() - started


def post_head(length: int) -> bytes:
    return (f"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def test_a_partial_header_gets_408_and_is_closed_within_the_header_timeout(shard_factory):
    shard = shard_factory("a", HEADER_TIMEOUT_S="1")
    with connect(shard.url) as sock:
        sock.sendall(b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Ty")
        reply, took = read_until_closed(sock, 5)
    assert reply.startswith(b"HTTP/1.1 408"), reply
    assert 0.8 < took < 2.5, f"closed after {took:.2f}s with a 1 s header timeout"
    text = scrape(shard.metrics_url)
    assert counter_total(text, "me_requests_timed_out", phase="header") == 1
    assert sample(text, "me_connections_open", shard="a") == 0


def test_a_trickled_body_gets_408_and_a_whole_one_is_served(shard_factory):
    shard = shard_factory("a", BODY_TIMEOUT_S="1")
    with connect(shard.url) as sock:
        sock.sendall(post_head(len(ORDER)) + ORDER[:10])
        reply, took = read_until_closed(sock, 5)
    assert reply.startswith(b"HTTP/1.1 408") and b"body not received" in reply, reply
    assert took < 2.5
    with connect(shard.url) as sock:
        sock.sendall(post_head(len(ORDER)) + ORDER)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    assert counter_total(scrape(shard.metrics_url), "me_requests_timed_out", phase="body") == 1


def test_an_idle_keep_alive_connection_is_closed_after_the_keepalive_timeout(shard_factory):
    shard = shard_factory("a", KEEPALIVE_TIMEOUT_S="1", HEADER_TIMEOUT_S="5")
    with connect(shard.url) as sock:
        sock.sendall(post_head(len(ORDER)) + ORDER)
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        rest, took = read_until_closed(sock, 5)
    assert rest == b"" and 0.8 < took < 2.5, f"idle close after {took:.2f}s, sent {rest!r}"


def test_past_max_connections_new_ones_get_a_fast_503_and_service_returns(shard_factory, gateway_factory):
    shard = shard_factory("a")
    gateway = gateway_factory({"a": shard.url}, SHARD_SYMBOLS_MAP="a=TEST-ASSET-A", MAX_CONNECTIONS="5",
                              HEADER_TIMEOUT_S="2")
    held = [connect(gateway.url) for _ in range(5)]
    try:
        for sock in held:
            sock.sendall(b"GET /hea")  # partial headers: they hold their slots until the header timeout
        time.sleep(0.3)
        started = time.monotonic()
        r = httpx.post(f"{gateway.url}/orders", content=ORDER, headers={"Content-Type": "application/json"})
        assert time.monotonic() - started < 1.0
        assert r.status_code == 503 and r.headers["Retry-After"] == "1", r.text
        assert "connection limit (5)" in r.json()["reason"]
        time.sleep(2.5)  # the header timeout frees the slots
        r = httpx.post(f"{gateway.url}/orders", content=ORDER, headers={"Content-Type": "application/json"})
        assert r.status_code == 200, r.text
    finally:
        for sock in held:
            sock.close()
    text = scrape(gateway.metrics_url)
    assert counter_total(text, "gw_connections_refused") == 1
    assert counter_total(text, "gw_requests_timed_out", phase="header") == 5
    assert sample(text, "gw_connections_open") == 0


def test_the_gateway_sheds_past_its_in_flight_bound_instead_of_queueing(shard_factory, gateway_factory):
    shard = shard_factory("a")
    gateway = gateway_factory({"a": shard.url}, SHARD_SYMBOLS_MAP="a=TEST-ASSET-A", MAX_INFLIGHT_PER_SHARD="2")
    shard.process.suspend()  # every forwarded order now waits
    stuck: list[int] = []

    def post(i: int) -> None:
        body = ORDER.replace(b"e1", f"w{i}".encode())
        stuck.append(httpx.post(f"{gateway.url}/orders", content=body, headers={"Content-Type": "application/json"},
                                timeout=15).status_code)

    waiting = [threading.Thread(target=post, args=(i,)) for i in range(2)]
    try:
        for t in waiting:
            t.start()
        time.sleep(0.5)
        started = time.monotonic()
        r = httpx.post(f"{gateway.url}/orders", content=ORDER, headers={"Content-Type": "application/json"})
        assert time.monotonic() - started < 0.5, "a shed order must be answered at once"
        assert r.status_code == 503 and r.headers["Retry-After"] == "1" and "in flight" in r.json()["reason"]
    finally:
        shard.process.resume()
        for t in waiting:
            t.join(20)
    assert stuck == [200, 200]  # the two in flight were served, not dropped
    text = scrape(gateway.metrics_url)
    assert counter_total(text, "gw_requests_shed", shard="a") == 1
    assert counter_total(text, "gw_requests", shard="a", status="5xx") == 1


def replies_in(data: bytes) -> list[int]:
    """The status codes of the HTTP/1.1 replies in a byte stream, in order."""
    return [int(code) for code in re.findall(rb"HTTP/1\.[01] (\d{3}) ", data)]  # a body has no line end


def test_a_header_held_back_until_complete_is_served_however_it_arrives(shard_factory):
    """The guard keeps a connection's bytes from the HTTP server until its first header is complete."""
    shard = shard_factory("a")
    body = ORDER.replace(b'"e1"', b'"trickle"')
    request = post_head(len(body)) + body
    with connect(shard.url) as sock:
        for i in range(len(request)):  # one byte per write: the header's end straddles reads
            sock.sendall(request[i:i + 1])
            time.sleep(0.001)
        assert replies_in(sock.recv(65536)) == [200]
    pipelined = b"".join(post_head(len(b)) + b for b in (ORDER.replace(b'"e1"', f'"pipe{i}"'.encode())
                                                          for i in range(3)))
    with connect(shard.url) as sock:
        sock.sendall(pipelined)  # three requests in one write, before any reply
        data = b""
        while len(replies_in(data)) < 3:
            data += sock.recv(65536)
        assert replies_in(data) == [200, 200, 200]


def test_an_endless_header_is_answered_by_the_server_and_a_silent_close_costs_nothing(shard_factory):
    shard = shard_factory("a")
    with connect(shard.url) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Long: " + b"y" * 20_000)  # no header end
        reply, _took = read_until_closed(sock, 5)
    assert replies_in(reply) and 400 <= replies_in(reply)[0] < 500, reply[:200]
    for _ in range(20):  # connections closed before a whole header: no handler was ever made for them
        with connect(shard.url) as sock:
            sock.sendall(b"GET /hea")
    with connect(shard.url) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert replies_in(sock.recv(65536)) == [200]
    deadline = time.monotonic() + 5
    while sample(scrape(shard.metrics_url), "me_connections_open", shard="a") != 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sample(scrape(shard.metrics_url), "me_connections_open", shard="a") == 0
