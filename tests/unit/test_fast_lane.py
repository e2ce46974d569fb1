"""The edge's fast lane for POST /orders, over a real loopback socket, in front of a real aiohttp app."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from matchlab.edge.fastlane import MAX_BUFFERED, MAX_PENDING, FastRoute
from matchlab.edge.guard import ConnectionGuard, EdgeMetrics, edge_middleware, queued_s, start_guarded
from matchlab.edge.limits import EdgeLimits
from matchlab.edge.replies import Reply, json_reply
from matchlab.httpjson import read_json_body, to_response
from matchlab.service import event_loop_runner

LIMIT = 64


class Service:
    """Both paths call ``place``; it records which path each order came by."""

    def __init__(self, delay_s: Callable[[dict], float] = lambda doc: 0.0, padding: int = 0) -> None:
        self.placed: list[tuple[str, str]] = []  # (path taken, order id)
        self.refused: list[int] = []
        self.delay_s = delay_s
        self.padding = "x" * padding  # makes replies big, to fill the socket's buffers
        self.guard: ConnectionGuard | None = None
        self.max_queued = self.max_buffered = 0

    async def place(self, body: bytes, _received_at: float, _queued: float, lane: str = "fast") -> Reply:
        try:
            doc = json.loads(body)
        except ValueError:
            return json_reply(400, {"status": "REJECTED", "reason": "bad json"})
        self.placed.append((lane, doc["id"]))
        for conn in self.guard._by_transport.values():
            if conn.lane is not None:
                self.max_queued = max(self.max_queued, len(conn.lane._queue))
                self.max_buffered = max(self.max_buffered, len(conn.lane._buffer))
        await asyncio.sleep(self.delay_s(doc))
        return json_reply(200, {"id": doc["id"], "pad": self.padding} if self.padding else {"id": doc["id"]})

    def refuse(self, reply: Reply, _received_at: float) -> Reply:
        self.refused.append(reply.status)
        return reply

    async def post_order(self, request: web.Request) -> web.Response:
        body = await read_json_body(request, LIMIT)
        if isinstance(body, Reply):
            return to_response(self.refuse(body, 0.0))
        return to_response(await self.place(body, 0.0, queued_s(request), lane="aiohttp"))


async def health(_request: web.Request) -> web.Response:
    return web.Response(text="up")


async def served(service: Service, limits: EdgeLimits,
                 scenario: Callable[[int, ConnectionGuard], Awaitable[None]]) -> None:
    registry = CollectorRegistry()
    guard = service.guard = ConnectionGuard(limits, EdgeMetrics("t", registry),
                                            FastRoute(service.place, service.refuse, LIMIT))
    app = web.Application(middlewares=[edge_middleware(guard)])
    app.router.add_post("/orders", service.post_order)
    app.router.add_get("/health", health)
    runner = await start_guarded(app, "127.0.0.1", 0, guard, shutdown_grace_s=2)
    try:
        await scenario(runner.addresses[0][1], guard)
    finally:
        await runner.cleanup()


def run(scenario, service: Service | None = None, **limits: float) -> Service:
    """On the event loop the services run on (uvloop: its transports pause and buffer as production's do)."""
    service = service or Service()
    event_loop_runner()(served(service, EdgeLimits(**limits), scenario))
    return service


def order(order_id: str, *, headers: str = "", content_type: str = "application/json") -> bytes:
    body = json.dumps({"id": order_id}).encode()
    return (f"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n{headers}\r\n").encode() + body


async def read_reply(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    if head.startswith(b"HTTP/1.1 100 "):  # aiohttp's answer to Expect: 100-continue, before the reply
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:] if line)}
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 5)
    return int(lines[0].split()[1]), headers, body


async def closed_by_server(reader: asyncio.StreamReader, within_s: float = 5) -> bool:
    return await asyncio.wait_for(reader.read(), within_s) == b""


def test_pipelined_orders_are_answered_in_order_with_keep_alive():
    async def scenario(port: int, _guard) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"".join(order(f"o{i}") for i in range(5)))  # one write, five requests
        for i in range(5):
            status, headers, body = await read_reply(reader)
            assert (status, json.loads(body)) == (200, {"id": f"o{i}"})
            assert headers["content-type"] == "application/json" and "connection" not in headers
        writer.write(order("again"))  # the connection stays open for more
        assert (await read_reply(reader))[2] == b'{"id":"again"}'
        writer.close()

    # the first ordered is the slowest: a reply must still wait for those before it
    service = run(scenario, Service(delay_s=lambda doc: 0.05 if doc["id"] == "o0" else 0.0))
    assert service.placed == [("fast", f"o{i}") for i in range(5)] + [("fast", "again")]


def test_another_route_after_orders_is_handed_to_aiohttp_with_what_follows():
    async def scenario(port: int, _guard) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(order("f1") + b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" + order("a1"))
        replies = [await read_reply(reader) for _ in range(3)]
        assert [(s, b) for s, _h, b in replies] == [(200, b'{"id":"f1"}'), (200, b"up"), (200, b'{"id":"a1"}')]
        writer.write(order("a2"))
        assert (await read_reply(reader))[2] == b'{"id":"a2"}'
        writer.close()

    assert run(scenario).placed == [("fast", "f1"), ("aiohttp", "a1"), ("aiohttp", "a2")]


BODY = b'{"id":"h1"}'
JSON_POST = b"POST /orders HTTP/1.%d\r\nHost: x\r\nContent-Type: application/json\r\n"


@pytest.mark.parametrize("request_bytes", [
    JSON_POST % 1 + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(BODY), BODY),
    JSON_POST % 1 + b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY),
    JSON_POST % 0 + b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY),
], ids=["chunked", "expect-continue", "http-1.0"])
def test_an_order_the_lane_does_not_frame_itself_is_handed_to_aiohttp(request_bytes):
    async def scenario(port: int, _guard) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request_bytes)
        assert (await read_reply(reader))[:3:2] == (200, BODY)
        writer.close()

    assert run(scenario).placed == [("aiohttp", "h1")]


def test_refusals_413_before_the_body_415_and_400():
    async def scenario(port: int, _guard) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(order("x", content_type="text/plain") + order("bad")[:-3] + b"!!}")
        status, _h, body = await read_reply(reader)
        assert status == 415 and "got 'text/plain'" in json.loads(body)["reason"]
        status, _h, body = await read_reply(reader)
        assert status == 400 and json.loads(body)["reason"] == "bad json"
        # a declared body over the limit: refused from the head alone, the body never sent
        writer.write(b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000000\r\n\r\n")
        status, headers, body = await read_reply(reader)
        assert status == 413 and "exceeds the 64-byte limit" in json.loads(body)["reason"]
        assert headers["connection"] == "close" and await closed_by_server(reader)

    service = run(scenario)
    assert service.refused == [415, 413] and service.placed == []


def test_a_head_trickled_byte_by_byte_is_served():
    async def scenario(port: int, _guard) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for byte in order("t1"):
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.001)
        assert (await read_reply(reader))[2] == b'{"id":"t1"}'
        writer.close()

    assert run(scenario).placed == [("fast", "t1")]


def test_a_body_that_does_not_arrive_gets_408_closes_and_is_counted():
    async def scenario(port: int, guard: ConnectionGuard) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(order("slow")[:-4])  # the head and part of the body
        status, headers, body = await read_reply(reader)
        assert status == 408 and b"body not received within 0.3s" in body and headers["connection"] == "close"
        assert await closed_by_server(reader)
        assert guard.metrics.timed_out["body"]._value.get() == 1
        assert guard.metrics.timed_out["header"]._value.get() == 0

    assert run(scenario, body_timeout_s=0.3, header_timeout_s=5).refused == [408]


def test_a_half_header_gets_the_header_timeout_and_an_idle_connection_is_closed():
    async def scenario(port: int, guard: ConnectionGuard) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(order("i1"))
        assert (await read_reply(reader))[0] == 200
        started = asyncio.get_running_loop().time()
        assert await closed_by_server(reader)  # idle keep-alive timeout
        assert 0.3 < asyncio.get_running_loop().time() - started < 2
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(order("h1")[:20])
        assert (await read_reply(reader))[0] == 408
        assert guard.metrics.timed_out["header"]._value.get() == 1

    run(scenario, keepalive_timeout_s=0.4, header_timeout_s=0.4)


def test_connection_close_from_the_client_is_honoured():
    async def scenario(port: int, _guard) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(order("c1", headers="Connection: close\r\n") + order("never"))
        status, headers, _body = await read_reply(reader)
        assert status == 200 and headers["connection"] == "close"
        assert await closed_by_server(reader)

    assert run(scenario).placed == [("fast", "c1")]


def test_a_long_pipeline_is_answered_in_order_with_bounded_queue_and_buffer():
    count = 10_000  # ~1 MB in one write

    async def scenario(port: int, _guard) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"".join(order(f"p{i}") for i in range(count)))
        for i in range(count):
            assert (await read_reply(reader))[2] == f'{{"id":"p{i}"}}'.encode()
        writer.close()

    service = run(scenario)
    assert len(service.placed) == count and 0 < service.max_queued <= MAX_PENDING
    assert service.max_buffered < MAX_BUFFERED + 256 * 1024  # reading paused: at most one more read's worth


def test_a_client_that_does_not_read_stops_the_answering_until_it_does():
    count = 2_000  # 20 MB of replies: far more than the socket buffers hold

    async def scenario(port: int, guard: ConnectionGuard) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"".join(order(f"w{i}") for i in range(count)))
        await asyncio.sleep(1.0)  # not reading
        (conn,) = guard._by_transport.values()
        stalled_at = len(service.placed)
        assert conn.lane._writable is not None and stalled_at < count
        assert conn._transport.get_write_buffer_size() < 1024 * 1024  # replies wait unmade, not buffered
        for i in range(count):
            _status, _headers, body = await read_reply(reader)
            assert json.loads(body)["id"] == f"w{i}"
        writer.close()

    service = Service(padding=10_000)
    run(scenario, service)
    assert len(service.placed) == count


def test_stopping_the_server_answers_what_is_in_flight_and_closes_idle_connections():
    async def scenario(port: int, guard: ConnectionGuard) -> None:
        idle_reader, _w1 = await asyncio.open_connection("127.0.0.1", port)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(order("slow"))
        await asyncio.sleep(0.05)  # being answered
        stopping = asyncio.create_task(guard.shut_down_fast_lanes(2))
        assert (await read_reply(reader))[2] == b'{"id":"slow"}'
        assert await closed_by_server(reader) and await closed_by_server(idle_reader)
        await stopping

    run(scenario, Service(delay_s=lambda doc: 0.3))
