"""What the shard's and the gateway's HTTP sides share: JSON replies, bounded body reads, metrics.

Neutral on purpose: the gateway imports this, never the shard's server (which
would pull the matching engine and confluent-kafka into every gateway).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
)

from matchlab.edge.guard import body_deadline, close_after_reply
from matchlab.edge.replies import Reply, body_refusal, body_timeout_refusal, json_reply, rejected
from matchlab.exposition import ScrapeRegistry, exposition

# docs/internals/design.md §3.1: one order is small; a seed carries whole books.
MAX_ORDER_BYTES = 4 * 1024
MAX_SEED_BYTES = 32 * 1024 * 1024


def to_response(reply: Reply) -> web.Response:
    # Content-Type as a header, not content_type=: an upstream's may carry a charset, which that refuses.
    return web.Response(status=reply.status, body=reply.body,
                        headers={"Content-Type": reply.content_type, **dict(reply.headers)})


def json_response(status: int, doc: dict) -> web.Response:
    return to_response(json_reply(status, doc))


def rejection(status: int, reason: str, order_id: str | None = None) -> web.Response:
    return to_response(rejected(status, reason, order_id))


async def read_json_body(request: web.Request, limit: int) -> bytes | Reply:
    """The raw body, or a 4xx reply for a wrong content type, an oversized or a too-slow body.

    The declared length is checked before reading, so an oversized body is
    refused without being buffered. Under the edge guard the read is bounded
    by its body timeout: a client trickling its body gets 408 and the
    connection is closed.
    """
    refusal = body_refusal(request.content_type, request.content_length, limit)
    if refusal is not None:
        return refusal
    if request.content_length is not None and request.content.is_eof():
        return await request.read()  # the whole body came with the header: nothing to wait for, no timer
    seconds, timed_out = body_deadline(request)
    try:
        async with asyncio.timeout(seconds):
            return await _read_within(request, limit)
    except TimeoutError:
        if timed_out is not None:
            timed_out.inc()
        close_after_reply(request)  # its unread remainder would otherwise be parsed as a request
        return body_timeout_refusal(seconds)


async def _read_within(request: web.Request, limit: int) -> bytes | Reply:
    if request.content_length is not None:
        return await request.read()  # declared and within the limit: read it in one go
    body = bytearray()  # chunked: count as it arrives
    while chunk := await request.content.read(limit + 1 - len(body)):
        body += chunk
        if len(body) > limit:
            return rejected(413, f"body exceeds the {limit}-byte limit")
    return bytes(body)


def new_registry() -> ScrapeRegistry:
    """A private registry with the Python runtime's own collectors (process, GC), cheap to scrape."""
    registry = ScrapeRegistry()
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    return registry


Handler = Callable[[web.Request], Awaitable[web.Response]]


async def start_metrics_site(
    registry: CollectorRegistry, host: str, port: int, health: Handler, shutdown_grace_s: float,
    more: dict[str, Handler] | None = None,
) -> web.AppRunner:
    """Serve ``/metrics`` (the registry), ``/health`` and the GET routes in ``more`` on their own port; return
    the runner to clean up."""

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=exposition(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health", health)
    for path, handler in (more or {}).items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_grace_s)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    return runner
