"""A connection watchdog and cap in front of an aiohttp server.

aiohttp (3.14) has an idle ``keepalive_timeout`` and a ``lingering_time`` for
unread bodies, but no header-read timeout, no body-read timeout and no
connection cap: a client that sends half a header and stops holds its
descriptor until the keep-alive timer, and enough of them exhaust the
process's descriptors. This module adds what is missing without touching
aiohttp's internals:

* ``GuardedSite`` listens like ``web.TCPSite`` but wraps aiohttp's protocol
  factory: past ``max_connections`` open connections a new one gets a canned
  503 with ``Retry-After`` and is closed; every other connection is wrapped
  in a ``_WatchedConnection`` that delegates to aiohttp's own handler.
* The watchdog is one timer per connection, re-armed at each phase change:
  header (from connect, or from the first byte after an idle pause) ->
  handling (no timer: the handler's own deadlines apply) -> idle keep-alive.
  The middleware from ``edge_middleware`` reports the phase changes.
* The body's read is bounded in ``read_body`` (408 on expiry).
* Given a ``FastRoute``, a connection is served by the fast lane
  (``matchlab.edge.fastlane``) for as long as it sends only that route's
  requests; aiohttp's handler is made at the first other request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import cast

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge

from matchlab.edge.fastlane import HEADER_END, FastLane, FastRoute
from matchlab.edge.limits import EdgeLimits

log = logging.getLogger(__name__)

TIMEOUT_PHASES = ("header", "body")
# A refused client has usually sent its request already: closing a socket with
# unread input makes the kernel send RST, which can destroy the 503 before the
# client reads it. So the refusal half-closes, discards input, and aborts after this.
REFUSAL_LINGER_S = 1.0
# aiohttp's default listen backlog (128) overflows under a burst of connects, and an overflowed
# SYN waits a second for its retransmit: a legitimate client would see that as a hang.
LISTEN_BACKLOG = 4096
# A header is held back from aiohttp until complete, up to aiohttp's own header limit (8 KiB per
# line); longer ones are handed over so its parser gives the usual answer.
MAX_BUFFERED_HEAD = 16 * 1024
INF = float("inf")
# How often a stopping server looks whether its fast-lane connections have closed.
SHUTDOWN_POLL_S = 0.02


def _canned(status: str, reason: str, retry_after_s: int | None) -> bytes:
    body = b'{"status":"REJECTED","reason":"' + reason.encode() + b'"}'
    retry = f"Retry-After: {retry_after_s}\r\n" if retry_after_s is not None else ""
    head = (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{retry}Connection: close\r\n\r\n")
    return head.encode() + body


class EdgeMetrics:
    """Open connections, refused connections, requests timed out, under the service's prefix."""

    def __init__(self, prefix: str, registry: CollectorRegistry, labels: dict[str, str] | None = None) -> None:
        labels = labels or {}
        names = list(labels)
        self.open = Gauge(f"{prefix}_connections_open", "Client connections open now", names, registry=registry)
        self.refused = Counter(f"{prefix}_connections_refused_total",
                               "Connections answered 503 because MAX_CONNECTIONS were open", names, registry=registry)
        timed_out = Counter(f"{prefix}_requests_timed_out_total",
                            "Requests whose header or body did not arrive in time (408 and close)",
                            [*names, "phase"], registry=registry)
        if labels:
            self.open, self.refused = self.open.labels(**labels), self.refused.labels(**labels)
        self.timed_out = {p: timed_out.labels(**labels, phase=p) for p in TIMEOUT_PHASES}


class ConnectionGuard:
    """The cap and the per-connection watchdog for one listening site."""

    def __init__(self, limits: EdgeLimits, metrics: EdgeMetrics, fast_route: FastRoute | None = None) -> None:
        self.limits = limits
        self.metrics = metrics
        self.fast_route = fast_route
        self.open = 0
        self._by_transport: dict[asyncio.BaseTransport, _WatchedConnection] = {}
        self._refusal = _canned("503 Service Unavailable",
                                f"connection limit ({limits.max_connections}) reached: retry later",
                                limits.retry_after_s)
        metrics.open.set_function(lambda: self.open)

    def protocol_factory(self, server: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        def make() -> asyncio.Protocol:
            if self.open >= self.limits.max_connections:
                self.metrics.refused.inc()
                return _Refusal(self._refusal)
            return _WatchedConnection(self, server)

        return make

    def connection_of(self, request: web.BaseRequest) -> _WatchedConnection | None:
        return self._by_transport.get(request.transport) if request.transport is not None else None

    async def shut_down_fast_lanes(self, grace_s: float) -> None:
        """Close the fast lane's connections as aiohttp's shutdown closes its own (which it cannot see):
        idle ones at once, busy ones after their queued replies, what is left after ``grace_s``."""
        lanes = [c for c in self._by_transport.values() if c.lane is not None]
        for conn in lanes:
            conn.lane.shut_down()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        while any(c.lane is not None and not c.lane.closed for c in lanes) and loop.time() < deadline:
            await asyncio.sleep(SHUTDOWN_POLL_S)
        for conn in lanes:
            if conn.lane is not None and not conn.lane.closed and conn._transport is not None:
                conn._transport.abort()


class _Refusal(asyncio.Protocol):
    """503 + Retry-After, half-close, discard whatever the client sent, abort after a short linger."""

    def __init__(self, reply: bytes) -> None:
        self._reply = reply

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio subclasses
        transport.write(self._reply)
        if transport.can_write_eof():
            transport.write_eof()
        self._abort = asyncio.get_running_loop().call_later(REFUSAL_LINGER_S, transport.abort)

    def data_received(self, data: bytes) -> None:
        pass  # discarded: the answer is already on its way

    def eof_received(self) -> bool:
        return False  # the client is done too: close now

    def connection_lost(self, exc: BaseException | None) -> None:
        self._abort.cancel()


class _WatchedConnection(asyncio.Protocol):
    """Delegates to aiohttp's RequestHandler; closes the connection when its current phase overruns.

    The handler is made only once a first complete header has arrived: a connection that never
    sends one (a slow or hostile client) then costs a buffer and a timer, not aiohttp's handler,
    its task and its teardown (measured: ~300 us of CPU per such connection before, in the gateway).
    With a fast route, a ``FastLane`` serves the connection first and makes the handler only at
    the first request it does not serve (``hand_over``); the timers are this object's either way.
    """

    def __init__(self, guard: ConnectionGuard, make_inner: Callable[[], asyncio.Protocol]) -> None:
        self._guard = guard
        self._make_inner = make_inner
        self._inner: asyncio.Protocol | None = None
        self._head = b""  # what arrived before the first header was complete
        self.lane: FastLane | None = None  # serves the connection until aiohttp's handler is made
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        # One timer per connection, rarely moved: a phase change only sets the deadline, and the
        # timer, when it fires early, re-arms itself for what is left (no cancel/re-arm per request).
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = INF
        self._deadline = INF
        self._phase = "header"  # header | handling | idle
        # When the latest bytes were read: a request's header is complete at its last
        # chunk, so the time from then to its handler starting is its queueing inside the process.
        self.last_read_at = perf_counter()

    # -- phases ------------------------------------------------------------

    def _arm(self, phase: str, seconds: float) -> None:
        self._phase = phase
        self._deadline = deadline = self._loop.time() + seconds
        if deadline < self._timer_at:  # only ever moved earlier; a later deadline is reached by re-arming
            if self._timer is not None:
                self._timer.cancel()
            self._timer, self._timer_at = self._loop.call_at(deadline, self._check), deadline

    def request_started(self) -> None:
        """The header is complete: the handler and its own deadlines take over."""
        self._phase = "handling"
        self._deadline = INF

    def request_finished(self) -> None:
        self._arm("idle", self._guard.limits.keepalive_timeout_s)

    def expect(self, phase: str) -> None:
        """The fast lane waits for a header or a body: its deadline runs from the first time it is asked."""
        if phase != self._phase:
            limits = self._guard.limits
            self._arm(phase, limits.header_timeout_s if phase == "header" else limits.body_timeout_s)

    def _check(self) -> None:
        self._timer, self._timer_at = None, INF
        if self._transport is None or self._transport.is_closing():
            return
        if self._loop.time() < self._deadline:  # the phase moved on since this was armed
            if self._deadline != INF:
                self._timer, self._timer_at = self._loop.call_at(self._deadline, self._check), self._deadline
            return
        self._expire()

    def _expire(self) -> None:
        if self._phase == "header":
            self._guard.metrics.timed_out["header"].inc()
            self._transport.write(_canned("408 Request Timeout", "request header not received in time", None))
            self._transport.close()  # flushes the 408, then closes
        elif self._phase == "body" and self.lane is not None:  # aiohttp's path times its body in read_json_body
            self._guard.metrics.timed_out["body"].inc()
            self.lane.body_timed_out(self._guard.limits.body_timeout_s)
        elif self._phase == "idle":
            self._transport.close()

    # -- asyncio.Protocol, delegated -------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio subclasses
        self._transport = transport
        self._guard.open += 1
        self._guard._by_transport[transport] = self
        self._arm("header", self._guard.limits.header_timeout_s)
        if self._guard.fast_route is not None:
            self.lane = FastLane(self, self._guard.fast_route, transport)

    def hand_over(self, data: bytes, eof: bool, writing_paused: bool) -> None:
        """The fast lane stops at a request it does not serve: aiohttp's handler gets it and all that follows."""
        self.lane = None
        inner = self._inner = self._make_inner()
        inner.connection_made(self._transport)
        if writing_paused:
            inner.pause_writing()
        if self._phase != "header":  # the handed-over request's header gets its deadline (until its handler starts)
            self._arm("header", self._guard.limits.header_timeout_s)
        if data:
            inner.data_received(data)
        if eof and not inner.eof_received():
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        self.last_read_at = perf_counter()
        inner = self._inner
        if self.lane is not None:
            if self._phase == "idle":  # the next request begins: its header has its own deadline
                self._arm("header", self._guard.limits.header_timeout_s)
            self.lane.data_received(data)
            return
        if inner is None:
            head = self._head + data if self._head else data
            if HEADER_END not in head and len(head) <= MAX_BUFFERED_HEAD:
                self._head = head  # not a request yet: no handler for it
                return
            self._head = b""
            inner = self._inner = self._make_inner()
            inner.connection_made(self._transport)
            data = head  # over-long heads go to aiohttp too: its parser answers them (431 / 400)
        elif self._phase == "idle":  # the next request begins: its header has its own deadline
            self._arm("header", self._guard.limits.header_timeout_s)
        inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self.lane is not None:
            return self.lane.eof_received()
        if self._inner is None:
            return False  # closed before a request: nothing to answer
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        if self.lane is not None:
            self.lane.pause_writing()
        elif self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self.lane is not None:
            self.lane.resume_writing()
        elif self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, INF
        self._guard.open -= 1
        if self._transport is not None:
            self._guard._by_transport.pop(self._transport, None)
        if self.lane is not None:
            self.lane.connection_lost()
        if self._inner is not None:
            self._inner.connection_lost(exc)


def edge_middleware(guard: ConnectionGuard):
    """Outermost middleware: tells the watchdog when a request's header is in and when it is answered."""

    @web.middleware
    async def watch(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
        connection = guard.connection_of(request)
        if connection is not None:
            connection.request_started()
            request[QUEUED_KEY] = perf_counter() - connection.last_read_at
        request[BODY_TIMEOUT_KEY] = (guard.limits.body_timeout_s, guard.metrics.timed_out["body"])
        try:
            response = await handler(request)
            if request.get(CLOSE_AFTER_REPLY_KEY):
                # aiohttp would otherwise linger up to lingering_time reading the rest of a body
                # that is not coming: send the reply now, then close at once (close() flushes it).
                await response.prepare(request)
                await response.write_eof()
                request.protocol.force_close()
            return response
        finally:
            if connection is not None:
                connection.request_finished()

    return watch


BODY_TIMEOUT_KEY = "matchlab.edge.body_timeout"
QUEUED_KEY = "matchlab.edge.queued_s"


def queued_s(request: web.Request) -> float:
    """How long the request waited inside this process between its last bytes and its handler."""
    return request.get(QUEUED_KEY, 0.0)
CLOSE_AFTER_REPLY_KEY = "matchlab.edge.close_after_reply"


def close_after_reply(request: web.Request) -> None:
    """Ask the edge middleware to close the connection as soon as this request's reply is sent."""
    request[CLOSE_AFTER_REPLY_KEY] = True


def body_deadline(request: web.Request) -> tuple[float | None, Counter | None]:
    """The body-read timeout and its counter the middleware attached (none outside a guarded app)."""
    return request.get(BODY_TIMEOUT_KEY, (None, None))


class GuardedSite(web.TCPSite):
    """``web.TCPSite`` whose connections pass through a ``ConnectionGuard``.

    Only ``start`` differs: it hands the event loop the guard's protocol factory
    instead of the runner's server itself (TCPSite's attributes are reused, so
    ``runner.cleanup()`` still stops this site).
    """

    def __init__(self, runner: web.AppRunner, host: str, port: int, guard: ConnectionGuard,
                 shutdown_grace_s: float, reuse_port: bool = False) -> None:
        super().__init__(runner, host, port, reuse_address=True, backlog=LISTEN_BACKLOG)
        self._guard = guard
        self._shutdown_grace_s = shutdown_grace_s
        self._share_port = reuse_port  # several processes listen on one port; the kernel spreads connections

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with the runner
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self._guard.protocol_factory(server), self._host, self._port, reuse_address=True,
            reuse_port=self._share_port or None, backlog=self._backlog,
        )

    async def stop(self) -> None:
        await super().stop()  # no new connections
        await self._guard.shut_down_fast_lanes(self._shutdown_grace_s)


async def start_guarded(app: web.Application, host: str, port: int, guard: ConnectionGuard,
                        shutdown_grace_s: float, reuse_port: bool = False) -> web.AppRunner:
    """Set up a runner for ``app`` (aiohttp's idle timer set to ours) and listen through the guard
    (``reuse_port``: on a port other processes listen on too, SO_REUSEPORT)."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_grace_s,
                           keepalive_timeout=guard.limits.keepalive_timeout_s)
    await runner.setup()
    await GuardedSite(runner, host, port, guard, shutdown_grace_s, reuse_port).start()
    return runner
