"""HTTP bake-off for the order path: clients (load generator, gateway upstream) and servers.

Run by hand:  python benchmarks/bench_http_clients.py [--rate R] [--seconds S] [--concurrency C]

Clients: each sends the same small JSON POST to the same trivial aiohttp
server (its own process), first open-model at R requests/s (latency from the
due time), then closed-loop with C concurrent requests (saturation). Printed
per client: its own CPU µs per request (this process's CPU time / requests),
p50/p99, and saturation requests/s — with ratios against aiohttp as the
project ran it before (the baseline, same run).

Servers: the lean client drives each server (aiohttp, uvicorn with a raw
ASGI app over httptools, granian RSGI) at R requests/s; printed: the server
process's CPU µs per request, p50/p99, and saturation requests/s.

Everything shares this machine's cores; compare ratios within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import aiohttp
import psutil
from hdrh.histogram import HdrHistogram

from matchlab.http1 import HttpPool
from matchlab.service import event_loop_runner
from matchlab.stack.probes import free_port

HERE = Path(__file__).resolve().parent
BODY = b'{"orderId":"bench-1","symbol":"TEST-ASSET-A","side":"BUY","type":"LIMIT","quantity":10,"price":100}'
POOL = 64

Send = Callable[[], Awaitable[int]]  # one POST; returns the status


@asynccontextmanager
async def aiohttp_client(url: str, tuned: bool):
    extra = {"cookie_jar": aiohttp.DummyCookieJar(), "auto_decompress": False,
             "skip_auto_headers": ("User-Agent", "Accept-Encoding")} if tuned else {}
    connector = aiohttp.TCPConnector(limit=POOL, ttl_dns_cache=None)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10), **extra) as s:
        headers = {"Content-Type": "application/json"}

        async def send() -> int:
            async with s.post(url, data=BODY, headers=headers) as resp:
                await resp.read()
                return resp.status

        yield send


@asynccontextmanager
async def http1_client(url: str):
    base, path = url.rsplit("/", 1)
    pool = HttpPool(base, POOL)
    head = pool.request_head(f"/{path}")

    async def send() -> int:
        return (await pool.post(head, BODY, 10.0)).status

    try:
        yield send
    finally:
        pool.close()


@asynccontextmanager
async def pyreqwest_client(url: str):
    from pyreqwest.client import ClientBuilder

    async with ClientBuilder().max_connections(POOL).timeout(timedelta(seconds=10)).error_for_status(False).build() as c:

        async def send() -> int:
            resp = await c.post(url).header("Content-Type", "application/json").body_bytes(BODY).build().send()
            await resp.bytes()
            return resp.status

        yield send


@asynccontextmanager
async def rnet_client(url: str):
    import rnet

    client = rnet.Client()
    headers = {"Content-Type": "application/json"}

    async def send() -> int:
        resp = await client.post(url, body=BODY, headers=headers)
        await resp.bytes()
        return resp.status

    yield send


CLIENTS = {
    "aiohttp (before)": lambda url: aiohttp_client(url, tuned=False),
    "aiohttp tuned": lambda url: aiohttp_client(url, tuned=True),
    "pyreqwest": pyreqwest_client,
    "rnet": rnet_client,
    "matchlab.http1": http1_client,
}


async def open_model(send: Send, rate: float, seconds: float) -> tuple[HdrHistogram, int, int]:
    """Send at fixed due times (not waiting for replies); latency from each due time, in µs."""
    loop = asyncio.get_running_loop()
    hist = HdrHistogram(1, 60_000_000, 3)
    errors = 0
    tasks = set()

    async def one(due: float) -> None:
        nonlocal errors
        try:
            status = await send()
        except Exception:  # noqa: BLE001 - any failure counts, the run goes on
            status = 0
        if status != 200:
            errors += 1
        hist.record_value(max(1, int((time.perf_counter() - due) * 1e6)))

    start = time.perf_counter() + 0.05
    n = int(rate * seconds)
    for i in range(n):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = loop.create_task(one(due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks)
    return hist, n, errors


async def closed_loop(send: Send, concurrency: int, seconds: float) -> int:
    end = time.perf_counter() + seconds
    done = 0

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < end:
            await send()
            done += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


def tree_cpu_s(proc: psutil.Process) -> float:
    """CPU seconds of a server and its worker processes (granian serves from a child)."""
    return sum(sum(p.cpu_times()[:2]) for p in [proc, *proc.children(recursive=True)])


async def measure_client(make, url: str, rate: float, seconds: float, concurrency: int, server: psutil.Process) -> dict:
    async with make(url) as send:
        for _ in range(200):  # warm: connections open, code paths hot
            await send()
        cpu0, srv0 = time.process_time(), tree_cpu_s(server)
        hist, n, errors = await open_model(send, rate, seconds)
        cpu, srv = time.process_time() - cpu0, tree_cpu_s(server) - srv0
        sat = await closed_loop(send, concurrency, seconds)
    return {"client_us": cpu / n * 1e6, "server_us": srv / n * 1e6, "p50": hist.get_value_at_percentile(50) / 1000,
            "p99": hist.get_value_at_percentile(99) / 1000, "errors": errors, "saturation": sat / seconds}


def start_server(kind: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE.parent / "src")])}
    if kind == "granian":
        argv = [str(Path(sys.executable).with_name("granian")), "--interface", "rsgi", "--host", "127.0.0.1",
                "--port", str(port), "--workers", "1", "--runtime-threads", "1", "--loop", "uvloop",
                "--no-ws", "--log-level", "warning", "benchmarks.bakeoff_servers:rsgi_app"]
    else:
        argv = [sys.executable, str(HERE / "bakeoff_servers.py"), kind, str(port)]
    proc = subprocess.Popen(argv, env=env, cwd=HERE.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{kind} server did not start on port {port}")


def row(name: str, r: dict, base: dict | None, key: str) -> str:
    ratio = f"{r[key] / base[key]:5.2f}x" if base else "  1.00x"
    return (f"  {name:<18} {r[key]:>7.0f} µs/req ({ratio})  p50 {r['p50']:6.2f} ms  p99 {r['p99']:6.2f} ms  "
            f"errors {r['errors']:<3} saturation {r['saturation']:>7,.0f} req/s")


async def bake_off(args: argparse.Namespace) -> None:
    print(f"HTTP bake-off, {os.cpu_count()} cores, {args.rate:,.0f} req/s open model for {args.seconds:g} s, "
          f"saturation with {args.concurrency} concurrent", flush=True)
    port = free_port()
    server = start_server("aiohttp", port)
    try:
        print("clients -> one aiohttp server (client CPU per request; ratio against aiohttp as before):")
        base = None
        for name, make in CLIENTS.items():
            try:
                r = await measure_client(make, f"http://127.0.0.1:{port}/orders", args.rate, args.seconds,
                                         args.concurrency, psutil.Process(server.pid))
            except ImportError as exc:
                print(f"  {name:<18} not installed ({exc.name}): pip install -e '.[bench]'")
                continue
            base = base or r
            print(row(name, r, base, "client_us"), flush=True)
    finally:
        server.terminate()
        server.wait()
    print("servers <- matchlab.http1 client (server CPU per request; ratio against aiohttp):")
    base = None
    for kind in ("aiohttp", "uvicorn", "granian"):
        if kind != "aiohttp" and importlib.util.find_spec(kind) is None:
            print(f"  {kind:<18} not installed: pip install -e '.[bench]'")
            continue
        port = free_port()
        server = start_server(kind, port)
        try:
            r = await measure_client(http1_client, f"http://127.0.0.1:{port}/orders", args.rate, args.seconds,
                                     args.concurrency, psutil.Process(server.pid))
        finally:
            server.terminate()
            server.wait()
        base = base or r
        print(row(kind, r, base, "server_us"), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    event_loop_runner()(bake_off(parser.parse_args()))


if __name__ == "__main__":
    main()
