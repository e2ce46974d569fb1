"""A fast lane for the one hot route (``POST /orders``), served without aiohttp's per-request objects.

Profiles of a shard at 500 orders/s put ~60 % of the loop's Python time in
aiohttp's per-request machinery (request and response objects, middlewares,
the stream writer) around a handler that is itself ~10 %. The hot request is
simple: a small JSON POST with a Content-Length. So the edge guard frames and
parses it here (llhttp via ``httptools``, as ``matchlab.http1`` does on the
client side), calls the service's ``place`` coroutine with the body and
writes the reply itself.

Anything else stays aiohttp's: the first request on a connection that is not
a plain ``POST /orders`` (another route or method, chunked, ``Expect``, an
Upgrade, HTTP/1.0, a head the parser refuses or one longer than aiohttp's
own limit) is handed over at its request boundary, once every earlier reply
is written, with all the bytes not yet consumed; the connection then stays
on aiohttp for good. Decisions (statuses, reasons, limits) are the service's
and ``matchlab.edge.replies``', shared with the aiohttp path.

Per connection: requests are answered one at a time, in order; at most
``MAX_PENDING`` parsed requests wait (then reading pauses), and replies stop
while the transport asks writing to pause. The guard's timers apply as on
aiohttp's path: header, body (408 + close), idle keep-alive.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from time import perf_counter, time
from typing import TYPE_CHECKING

import httptools

from matchlab.edge.replies import Reply, body_refusal, body_timeout_refusal, media_type

if TYPE_CHECKING:
    from matchlab.edge.guard import _WatchedConnection

log = logging.getLogger(__name__)

HEADER_END = b"\r\n\r\n"
# Parsed requests awaiting their reply on one connection; past this, reading pauses until they are
# answered (a client pipelining thousands of requests must not make the server buffer them all).
MAX_PENDING = 32
# Bytes held unparsed (behind a full queue, or for aiohttp while a hand-over waits); past it reading
# pauses too. One fast request is at most a head and a small body, so this is many requests' worth.
MAX_BUFFERED = 64 * 1024
# aiohttp refuses a header line over 8190 bytes; a head that long is handed over so it answers as usual.
MAX_FAST_HEAD = 8190
# After a refusal that leaves a body unread (413), input is discarded this long before the connection
# is aborted: closing with unread input makes the kernel send RST, which can destroy the reply in flight.
LINGER_S = 1.0
_WATCHED_HEADERS = frozenset((b"content-length", b"content-type", b"transfer-encoding", b"expect", b"upgrade"))
_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}
_INTERNAL_ERROR = Reply(500, b"500 Internal Server Error\n\nServer got itself in trouble", "text/plain; charset=utf-8")


@dataclass(frozen=True)
class FastRoute:
    """What a service gives the guard for its hot route.

    ``place(body, received_at, queued_s)`` answers a request whose body passed the checks (the
    aiohttp handler calls the same coroutine); ``refused(reply, received_at)`` sees every refusal
    the lane makes itself before ``place`` (415, 413, 408), to record it as the aiohttp path does.
    """

    place: Callable[[bytes, float, float], Awaitable[Reply]]
    refused: Callable[[Reply, float], Reply]
    limit: int  # the body's byte limit (413 past it, before the body is read)
    method: bytes = b"POST"
    path: bytes = b"/orders"


class _Date:
    """The Date header, formatted once a second."""

    second, line = -1, b""

    @classmethod
    def now(cls) -> bytes:
        second = int(time())
        if second != cls.second:
            cls.second, cls.line = second, f"Date: {formatdate(second, usegmt=True)}\r\n".encode()
        return cls.line


def encode_reply(reply: Reply, keep_alive: bool) -> bytes:
    extra = b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in reply.headers) if reply.headers else b""
    return b"%sContent-Type: %s\r\nContent-Length: %d\r\n%s%s%s\r\n%s" % (
        _STATUS_LINES.get(reply.status) or f"HTTP/1.1 {reply.status} \r\n".encode(),
        reply.content_type.encode("latin-1"), len(reply.body), _Date.now(), extra,
        b"" if keep_alive else b"Connection: close\r\n", reply.body)


class _Head:
    """``httptools`` callbacks for one request head (a fresh parser per head: the lane frames bodies itself)."""

    __slots__ = ("complete", "duplicate", "headers", "url")

    def __init__(self) -> None:
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.complete = self.duplicate = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in _WATCHED_HEADERS:
            self.duplicate |= name in self.headers
            self.headers[name] = value

    def on_headers_complete(self) -> None:
        self.complete = True


_HAND_OVER = object()  # queued where the connection passes to aiohttp


class FastLane:
    """The fast lane of one connection, until (if ever) it is handed to aiohttp."""

    def __init__(self, conn: _WatchedConnection, route: FastRoute, transport: asyncio.Transport) -> None:
        self._conn = conn
        self._route = route
        self._transport = transport
        self._buffer = bytearray()
        # (item, keep_alive): item is a body for ``place``, a refusal Reply, or _HAND_OVER.
        self._queue: deque[tuple[object, bool]] = deque()
        self._task: asyncio.Task | None = None
        self._body: tuple[int, Reply | None, bool] | None = None  # a head parsed, its body awaited
        self._parsing = True  # False once a request closes the connection, or it is handed over
        self._close_when_done = False
        self._reading_paused = False
        self._writable: asyncio.Future | None = None  # set while the transport asks writing to pause
        self._eof = False
        self._linger: asyncio.TimerHandle | None = None
        self.closed = False

    # -- input ---------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.closed or (not self._parsing and not self._handing_over()):
            return  # after a closing request: nothing more is read
        self._buffer += data
        self._advance()

    def eof_received(self) -> bool:
        """The client sent all it will: answer what is queued, then close."""
        if self.closed:
            return False
        self._eof = True
        if self._handing_over():
            return True  # aiohttp gets the eof after the bytes
        self._parsing = False
        if self._task is None and not self._queue:
            return False  # nothing to answer: close now
        self._close_when_done = True
        return True

    def _handing_over(self) -> bool:
        return bool(self._queue) and self._queue[-1][0] is _HAND_OVER

    def _advance(self) -> None:
        """Frame and parse what is buffered into queued requests, up to the queue's bound."""
        buffer, queue = self._buffer, self._queue
        while self._parsing and len(queue) < MAX_PENDING:
            if self._body is not None:
                length, refusal, keep_alive = self._body
                if len(buffer) < length:
                    break
                body = bytes(buffer[:length])
                del buffer[:length]
                self._body = None
                self._enqueue(refusal or body, keep_alive)
                continue
            end = buffer.find(HEADER_END)
            if end < 0:
                if len(buffer) > MAX_FAST_HEAD:
                    self._enqueue(_HAND_OVER, True)
                break
            if not self._parse_head(bytes(buffer[:end + 4])):
                self._enqueue(_HAND_OVER, True)
                break
            del buffer[:end + 4]
        pause = len(queue) >= MAX_PENDING or len(buffer) > MAX_BUFFERED
        if pause != self._reading_paused:  # the kernel's buffers, then the client's, hold the rest meanwhile
            self._reading_paused = pause
            (self._transport.pause_reading if pause else self._transport.resume_reading)()
        if self._task is not None:
            return  # it parses again once the queue is answered
        if queue and queue[0][0] is _HAND_OVER:  # nothing outstanding: aiohttp takes over at once
            queue.clear()
            self._hand_over()
        elif queue:
            self._conn.request_started()
            self._task = asyncio.get_running_loop().create_task(self._answer())
        else:
            self._set_phase()

    def _parse_head(self, raw: bytes) -> bool:
        """Queue (or await the body of) a fast request; False for anything aiohttp must answer."""
        route, head = self._route, _Head()
        if len(raw) > MAX_FAST_HEAD:
            return False
        parser = httptools.HttpRequestParser(head)
        try:
            parser.feed_data(raw)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            return False
        headers = head.headers
        if (not head.complete or head.duplicate or head.url != route.path or parser.get_method() != route.method
                or parser.get_http_version() != "1.1" or b"transfer-encoding" in headers
                or b"expect" in headers or b"upgrade" in headers):
            return False
        length = headers.get(b"content-length", b"")
        if not length.isdigit():
            return False
        length, keep_alive = int(length), parser.should_keep_alive()
        content_type = headers.get(b"content-type")
        refusal = body_refusal(media_type(None if content_type is None else
                                          content_type.decode("utf-8", "surrogateescape")),
                               length, route.limit)
        if refusal is not None and length > route.limit:  # answered without reading the body, then closed
            self._enqueue(refusal, False)
        else:
            self._body = (length, refusal, keep_alive)
        return True

    def _enqueue(self, item: object, keep_alive: bool) -> None:
        self._queue.append((item, keep_alive))
        if not keep_alive or item is _HAND_OVER:
            self._parsing = False  # what follows is aiohttp's, or nobody's

    # -- output --------------------------------------------------------------

    async def _answer(self) -> None:
        """Answer the queued requests in order; hand over or close where the queue says so."""
        conn, route, queue = self._conn, self._route, self._queue
        try:
            while queue and not self.closed:
                if self._writable is not None:
                    await self._writable
                    continue
                item, keep_alive = queue.popleft()
                if item is _HAND_OVER:
                    self._hand_over()
                    return
                conn.request_started()
                received_at = perf_counter()
                try:
                    if isinstance(item, Reply):
                        reply = route.refused(item, received_at)
                    else:
                        reply = await route.place(item, received_at, received_at - conn.last_read_at)
                except Exception:  # as aiohttp would: a 500, logged, and this connection closed
                    log.exception("fast lane: error answering %s %s", route.method.decode(), route.path.decode())
                    reply, keep_alive = _INTERNAL_ERROR, False
                if self.closed or self._transport.is_closing():  # the client left, or the server aborted
                    return
                keep_alive = keep_alive and not (self._close_when_done and not queue)
                self._transport.write(encode_reply(reply, keep_alive))
                if not keep_alive:
                    self._close(lingering=isinstance(item, Reply))  # a refusal may leave a body unread
                    return
                if len(queue) < MAX_PENDING // 2:
                    self._advance()  # parse what was held back while the queue was full; read again
        finally:
            self._task = None
        if not self.closed:
            self._set_phase()
            if self._close_when_done and not queue:
                self._close(lingering=False)

    def _set_phase(self) -> None:
        """Nothing being answered: the guard's timer now watches a body, a header, or an idle connection."""
        if self._body is not None:
            self._conn.expect("body")
        elif self._buffer:
            self._conn.expect("header")
        else:
            self._conn.request_finished()

    def body_timed_out(self, seconds: float) -> None:
        """The guard's body timer expired (nothing else is outstanding then): 408, then close."""
        reply = self._route.refused(body_timeout_refusal(seconds), perf_counter())
        self._transport.write(encode_reply(reply, False))
        self._close(lingering=False)

    def _hand_over(self) -> None:
        self.closed = True  # this lane is done; the connection is aiohttp's
        if self._reading_paused:
            self._transport.resume_reading()
        self._conn.hand_over(bytes(self._buffer), self._eof, self._writable is not None)

    def _close(self, lingering: bool) -> None:
        self.closed = True
        self._queue.clear()
        if not lingering or not self._transport.can_write_eof():
            self._transport.close()  # flushes the reply, then closes
            return
        self._transport.write_eof()
        if self._reading_paused:
            self._transport.resume_reading()  # input is discarded until the abort
        self._linger = asyncio.get_running_loop().call_later(LINGER_S, self._transport.abort)

    # -- transport events ------------------------------------------------------

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    def connection_lost(self) -> None:
        """Queued requests are dropped; one being answered finishes (as aiohttp's handlers do) unwritten."""
        self.closed = True
        self._queue.clear()
        self.resume_writing()
        if self._linger is not None:
            self._linger.cancel()

    def shut_down(self) -> None:
        """The server stops: answer what is queued (no hand-over), read nothing more, then close."""
        self._parsing = False
        while self._queue and self._queue[-1][0] is _HAND_OVER:
            self._queue.pop()
        if self._task is None and not self._queue:
            self._close(lingering=False)
        else:
            self._close_when_done = True
