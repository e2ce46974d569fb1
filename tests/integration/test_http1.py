"""The lean HTTP/1.1 client against a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from matchlab.http1 import HttpPool, UpstreamError, UpstreamTimeout
from matchlab.stack.probes import free_port


@asynccontextmanager
async def pool_to(routes: dict, limit: int) -> AsyncIterator[tuple[HttpPool, list]]:
    """A server with ``routes`` (POST) and a pool to it; yields the pool and the peer ports that connected."""
    peers: list = []

    @web.middleware
    async def note_peer(request, handler):
        peers.append(request.transport.get_extra_info("peername")[1])
        return await handler(request)

    app = web.Application(middlewares=[note_peer])
    for path, handler in routes.items():
        app.router.add_post(path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    pool = HttpPool(f"http://127.0.0.1:{port}", limit)
    try:
        yield pool, peers
    finally:
        pool.close()
        await runner.cleanup()


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.Response(status=201, body=b"echo:" + body, content_type="application/json",
                        headers={"X-Auth": request.headers.get("Authorization", "-")})


def test_post_round_trip_status_body_headers_and_one_connection_reused():
    async def main():
        async with pool_to({"/orders": echo}, limit=4) as (pool, peers):
            head = pool.request_head("/orders", {"Authorization": "Bearer t"})
            return [await pool.post(head, b'{"n":%d}' % i, 5.0) for i in range(20)], peers

    replies, peers = asyncio.run(main())
    assert [r.status for r in replies] == [201] * 20
    assert replies[3].body == b'echo:{"n":3}' and replies[3].content_type.startswith("application/json")
    assert replies[0].headers["x-auth"] == "Bearer t"
    assert len(set(peers)) == 1  # sequential requests share one keep-alive connection


def test_concurrent_requests_never_exceed_the_connection_limit_and_all_complete():
    async def slow(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(0.02)
        return web.json_response({"ok": True})

    async def main():
        async with pool_to({"/orders": slow}, limit=3) as (pool, peers):
            head = pool.request_head("/orders")
            return await asyncio.gather(*(pool.post(head, b"{}", 5.0) for i in range(30))), peers

    replies, peers = asyncio.run(main())
    assert [r.status for r in replies] == [200] * 30
    assert len(set(peers)) == 3


def test_a_stalled_reply_times_out_and_its_connection_is_not_reused():
    async def main():
        calls = 0

        async def stall_once(request: web.Request) -> web.Response:
            nonlocal calls
            calls += 1
            await request.read()
            if calls == 1:
                await asyncio.sleep(2)
            return web.Response(body=b"late" if calls == 1 else b"fresh", content_type="application/json")

        async with pool_to({"/orders": stall_once}, limit=1) as (pool, peers):
            head = pool.request_head("/orders")
            with pytest.raises(UpstreamTimeout):
                await pool.post(head, b"{}", 0.3)
            return await pool.post(head, b"{}", 5.0), peers

    second, peers = asyncio.run(main())
    assert second.body == b"fresh"  # never the first request's late reply
    assert len(set(peers)) == 2


def test_connection_close_replies_retire_the_connection():
    async def closing(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b"{}", content_type="application/json", headers={"Connection": "close"})

    async def main():
        async with pool_to({"/orders": closing}, limit=2) as (pool, peers):
            head = pool.request_head("/orders")
            return [await pool.post(head, b"{}", 5.0) for _ in range(3)], peers

    replies, peers = asyncio.run(main())
    assert [r.status for r in replies] == [200] * 3
    assert len(set(peers)) == 3


def test_chunked_replies_are_read_whole():
    async def chunked(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for part in (b'{"a":', b"1", b"}"):
            await resp.write(part)
        await resp.write_eof()
        return resp

    async def main():
        async with pool_to({"/orders": chunked}, limit=1) as (pool, _):
            return await pool.post(pool.request_head("/orders"), b"{}", 5.0)

    assert asyncio.run(main()).body == b'{"a":1}'


def test_nothing_listening_is_an_upstream_error_and_the_slot_is_freed():
    async def main():
        pool = HttpPool(f"http://127.0.0.1:{free_port()}", limit=1)
        head = pool.request_head("/orders")
        for _ in range(3):  # a leaked slot would make the 2nd wait for a connection that never comes
            with pytest.raises(UpstreamError, match="cannot connect"):
                await pool.post(head, b"{}", 2.0)

    asyncio.run(main())


def test_only_plain_http_upstreams():
    with pytest.raises(ValueError, match="only http"):
        HttpPool("https://example.org", 1)
