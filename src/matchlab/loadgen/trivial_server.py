"""A trivial HTTP target for measuring the load generator itself.

``python -m matchlab.loadgen.trivial_server --port P [--stall-after S --stall-for D]``

Answers every POST at once with a small JSON body. With ``--stall-after``,
it stops answering once, S seconds after its first request, for D seconds
(requests arriving then are held until the stall ends): the coordinated
omission test's server. Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web

from matchlab.service import event_loop_runner

REPLY = b'{"status":"ACCEPTED"}'


def make_app(stall_after: float | None, stall_for: float) -> web.Application:
    state: dict[str, float] = {}

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        loop = asyncio.get_running_loop()
        now = loop.time()
        first = state.setdefault("first", now)
        if stall_after is not None:
            begin = first + stall_after
            end = begin + stall_for
            if begin <= now < end:
                await asyncio.sleep(end - now)
        return web.Response(body=REPLY, content_type="application/json")

    async def health(_request: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"UP"}', content_type="application/json")

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    app.router.add_get("/health", health)
    return app


async def serve(port: int, stall_after: float | None, stall_for: float) -> None:
    runner = web.AppRunner(make_app(stall_after, stall_for), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description="trivial HTTP target for load-generator tests")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stall-after", type=float, default=None)
    parser.add_argument("--stall-for", type=float, default=1.0)
    args = parser.parse_args()
    try:
        event_loop_runner()(serve(args.port, args.stall_after, args.stall_for))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
