"""A lean HTTP/1.1 client for one upstream: a pool of keep-alive connections, no task per request.

The load generator and the gateway send one small JSON POST per order to a
handful of fixed upstreams they trust (our shards, our gateway). A general
client (aiohttp's) spends most of its CPU on what that does not need: a
request object, header multidicts, a cookie jar, a task and a timer context
per request. Here a request is one preformatted ``transport.write``; the
response is parsed by llhttp (``httptools``, the parser uvicorn uses) in
callbacks that resolve one future. Chosen by the client bake-off in
``benchmarks/bench_http_clients.py`` (numbers in docs/internals/performance.md).

Semantics the callers rely on:
* at most ``limit`` connections; beyond that, requests wait for a free one
  (FIFO), and the wait counts against the request's timeout;
* one request at a time per connection (no pipelining: a slow reply never
  holds up another request behind it);
* a response with ``Connection: close`` (or HTTP/1.0) retires its
  connection; a connection the server closed while idle is never reused;
* ``UpstreamTimeout`` after ``timeout_s`` from the call (the connection is
  aborted: a late reply must not be read as the next request's);
  ``UpstreamError`` when the connection cannot be made or breaks.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools


class UpstreamError(ConnectionError):
    """The upstream could not be reached, or the connection broke before a whole reply."""


class UpstreamTimeout(TimeoutError):
    """No whole reply within the request's timeout."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str]


class _Connection(asyncio.Protocol):
    """One keep-alive connection; ``httptools`` calls the ``on_*`` methods while parsing."""

    __slots__ = ("_body", "_headers", "_parser", "_pool", "_reply", "closed", "transport")

    def __init__(self, pool: HttpPool) -> None:
        self._pool = pool
        self._parser = httptools.HttpResponseParser(self)
        self._reply: asyncio.Future | None = None
        self._body: list[bytes] = []
        self._headers: dict[str, str] = {}
        self.transport: asyncio.Transport | None = None
        self.closed = False

    # -- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._reply is None:  # bytes nobody asked for: the stream cannot be trusted any more
            self.abort()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"malformed reply from {self._pool.authority}: {exc}"))
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._drop()
        why = f": {exc}" if exc else ""
        self._fail(UpstreamError(f"connection to {self._pool.authority} closed before a whole reply{why}"))

    # -- parser callbacks -----------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        reply, self._reply = self._reply, None
        headers, self._headers = self._headers, {}
        body = b"".join(self._body)
        self._body.clear()
        keep = self._parser.should_keep_alive()
        if reply is not None and not reply.done():
            reply.set_result(Reply(self._parser.get_status_code(), headers.get("content-type", ""), body, headers))
        if keep:
            self._pool._release(self)
        else:
            self.abort()

    # -- used by the pool -------------------------------------------------------

    def send(self, data: bytes, reply: asyncio.Future) -> None:
        self._reply = reply
        self.transport.write(data)

    def _fail(self, exc: Exception) -> None:
        reply, self._reply = self._reply, None
        if reply is not None and not reply.done():
            reply.set_exception(exc)

    def time_out(self, timeout_s: float) -> None:
        self._fail(UpstreamTimeout(f"no reply from {self._pool.authority} within {timeout_s:g}s"))
        self.abort()

    def abort(self) -> None:
        self._drop()
        if self.transport is not None:
            self.transport.abort()

    def _drop(self) -> None:
        """Leave the pool, once: both an abort and the connection_lost that follows it come here."""
        if not self.closed:
            self.closed = True
            self._pool._lost(self)


class HttpPool:
    """Keep-alive connections to one ``http://host:port``; ``post`` is the only verb the hot path needs."""

    def __init__(self, base_url: str, limit: int, connect_timeout_s: float = 2.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"{base_url!r}: only http://host[:port] upstreams are supported")
        self.host, self.port = parts.hostname, parts.port or 80
        self.authority = f"{self.host}:{self.port}"
        self.limit = limit
        self.connect_timeout_s = connect_timeout_s
        self._idle: list[_Connection] = []
        self._open = 0  # connected or connecting
        self._waiters: deque[asyncio.Future] = deque()
        self._closed = False

    def request_head(self, path: str, extra_headers: dict[str, str] | None = None) -> bytes:
        """The request line and fixed headers of a JSON POST to ``path``; the caller appends the length and body."""
        lines = [f"POST {path} HTTP/1.1", f"Host: {self.authority}", "Content-Type: application/json"]
        lines += [f"{k}: {v}" for k, v in (extra_headers or {}).items()]
        return ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")

    async def post(self, head: bytes, body: bytes, timeout_s: float) -> Reply:
        """POST ``body`` with the head from ``request_head``; raise UpstreamTimeout or UpstreamError."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        conn = self._idle.pop() if self._idle else await self._acquire(loop, deadline, timeout_s)
        reply = loop.create_future()
        conn.send(b"%s%d\r\n\r\n%s" % (head, len(body), body), reply)
        timer = loop.call_at(deadline, conn.time_out, timeout_s)
        try:
            return await reply
        finally:
            timer.cancel()

    async def _acquire(self, loop: asyncio.AbstractEventLoop, deadline: float, timeout_s: float) -> _Connection:
        """An idle connection, a new one while under the limit, or the next one released (FIFO)."""
        while True:
            if self._closed:
                raise UpstreamError(f"pool for {self.authority} is closed")
            if self._idle:
                return self._idle.pop()
            if self._open < self.limit:
                return await self._connect(loop, deadline)
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    return await waiter
            except _SlotFree:
                continue  # a connection was lost: open one in its place
            except BaseException as exc:  # timed out or cancelled: what it was handed goes to the next in line
                self._pass_on(waiter)
                if isinstance(exc, TimeoutError):
                    raise UpstreamTimeout(f"no free connection to {self.authority} within {timeout_s:g}s") from None
                raise

    def _pass_on(self, waiter: asyncio.Future) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)
        elif waiter.done() and not waiter.cancelled():
            if waiter.exception() is None:
                self._release(waiter.result())
            elif isinstance(waiter.exception(), _SlotFree):
                self._wake_next()

    async def _connect(self, loop: asyncio.AbstractEventLoop, deadline: float) -> _Connection:
        self._open += 1
        try:
            async with asyncio.timeout_at(min(deadline, loop.time() + self.connect_timeout_s)):
                _, conn = await loop.create_connection(lambda: _Connection(self), self.host, self.port)
        except TimeoutError:
            self._slot_freed()
            raise UpstreamTimeout(f"cannot connect to {self.authority} within {self.connect_timeout_s:g}s") from None
        except OSError as exc:
            self._slot_freed()
            raise UpstreamError(f"cannot connect to {self.authority}: {exc.strerror or exc}") from None
        except BaseException:
            self._slot_freed()
            raise
        return conn

    def _release(self, conn: _Connection) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append(conn)

    def _lost(self, conn: _Connection) -> None:
        if conn in self._idle:
            self._idle.remove(conn)
        self._slot_freed()

    def _slot_freed(self) -> None:
        """One connection fewer: the oldest waiter may open one of its own."""
        self._open -= 1
        self._wake_next()

    def _wake_next(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(_SlotFree())
                return

    def close(self) -> None:
        self._closed = True
        for conn in list(self._idle):
            conn.abort()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(UpstreamError(f"pool for {self.authority} closed"))
        self._waiters.clear()


class _SlotFree(Exception):
    """Internal: a connection slot became free; the waiter should open one."""


class Upstreams:
    """Pools keyed by base URL, for callers that hold whole URLs (the load generator's requests)."""

    def __init__(self, limit_per_upstream: int, timeout_s: float, connect_timeout_s: float = 2.0) -> None:
        self.limit = limit_per_upstream
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._pools: dict[str, HttpPool] = {}
        self._routes: dict[str, tuple[HttpPool, bytes]] = {}

    def _route(self, url: str) -> tuple[HttpPool, bytes]:
        parts = urlsplit(url)
        base = f"{parts.scheme}://{parts.netloc}"
        pool = self._pools.get(base)
        if pool is None:
            pool = self._pools[base] = HttpPool(base, self.limit, self.connect_timeout_s)
        route = self._routes[url] = (pool, pool.request_head(parts.path or "/"))
        return route

    async def post_status(self, url: str, body: bytes) -> str:
        """POST JSON ``body``; the reply's status code as text, or "timeout" / "connection_error"."""
        pool, head = self._routes.get(url) or self._route(url)
        try:
            return str((await pool.post(head, body, self.timeout_s)).status)
        except UpstreamTimeout:
            return "timeout"
        except UpstreamError:
            return "connection_error"

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
