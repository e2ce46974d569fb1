"""The edge guard makes the HTTP handler of a connection only once a whole request header has arrived."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from prometheus_client import CollectorRegistry

from matchlab.edge.guard import ConnectionGuard, EdgeMetrics
from matchlab.edge.limits import EdgeLimits


class Echo(asyncio.Protocol):
    """Stands in for aiohttp's handler: records what it was given."""

    made: ClassVar[list[Echo]] = []

    def __init__(self) -> None:
        Echo.made.append(self)
        self.received = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += data
        self.transport.write(b"ok")


async def exchange(port: int, *chunks: bytes, read: bool) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for chunk in chunks:
        writer.write(chunk)
        await writer.drain()
        await asyncio.sleep(0.01)
    reply = await asyncio.wait_for(reader.read(2), 5) if read else b""
    writer.close()
    await writer.wait_closed()
    return reply


def test_only_connections_that_complete_a_header_get_a_handler():
    async def main() -> None:
        Echo.made.clear()
        guard = ConnectionGuard(EdgeLimits(header_timeout_s=5), EdgeMetrics("t", CollectorRegistry()))
        server = await asyncio.get_running_loop().create_server(guard.protocol_factory(Echo), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        for _ in range(10):  # silent, and half a header: no handler
            await exchange(port, read=False)
            await exchange(port, b"GET /x HTTP/1.1\r\nHo", read=False)
        assert Echo.made == []
        # A header in three pieces, its end split across two of them: one handler, given every byte.
        assert await exchange(port, b"GET /x HTTP/1.1\r\n", b"Host: y\r\n\r", b"\nbody", read=True) == b"ok"
        assert len(Echo.made) == 1 and Echo.made[0].received.startswith(b"GET /x HTTP/1.1\r\nHost: y\r\n\r\n")
        # An endless header is handed over once past the buffer bound, for the HTTP parser to refuse.
        assert await exchange(port, b"GET /x HTTP/1.1\r\nX: " + b"z" * 20_000, read=True) == b"ok"
        assert len(Echo.made) == 2
        await asyncio.sleep(0.05)
        assert guard.open == 0
        server.close()
        await server.wait_closed()

    asyncio.run(main())
