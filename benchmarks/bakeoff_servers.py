"""The same trivial endpoint on three Python HTTP servers, for bench_http_clients.py's server bake-off.

Every server answers ``POST /orders`` by reading the body and replying
``{"status":"ACCEPTED"}`` as application/json, on 127.0.0.1, one process:
  aiohttp   python benchmarks/bakeoff_servers.py aiohttp PORT   (uvloop; what the shard and gateway run)
  uvicorn   python benchmarks/bakeoff_servers.py uvicorn PORT   (raw ASGI app, httptools parser, uvloop)
  granian   granian --interface rsgi benchmarks.bakeoff_servers:rsgi_app ...  (Rust HTTP, RSGI)
"""

from __future__ import annotations

import sys

REPLY = b'{"status":"ACCEPTED"}'
JSON_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(REPLY)).encode())]


async def asgi_app(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": JSON_HEADERS})
    await send({"type": "http.response.body", "body": REPLY})


async def rsgi_app(scope, protocol) -> None:
    await protocol()
    protocol.response_bytes(200, [("content-type", "application/json")], REPLY)


def serve_aiohttp(port: int) -> None:
    from aiohttp import web

    from matchlab.service import event_loop_runner

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=REPLY, content_type="application/json")

    async def main() -> None:
        import asyncio

        app = web.Application()
        app.router.add_post("/orders", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()

    event_loop_runner()(main())


def serve_uvicorn(port: int) -> None:
    import uvicorn

    uvicorn.run(asgi_app, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                log_level="warning", access_log=False, lifespan="off")


if __name__ == "__main__":
    kind, port = sys.argv[1], int(sys.argv[2])
    {"aiohttp": serve_aiohttp, "uvicorn": serve_uvicorn}[kind](port)
