"""The least CPU per request this machine charges at the experiments' rates: a floor under every hop.

Run by hand:  python benchmarks/bench_floor.py [--seconds S] [--dir DIR]

Issue 13 asks for a shard at <= 120 µs of CPU per order at 500 orders/s, a gateway at <= 80 and a
load generator at <= 60 at 1,500/s. This measures what the same hops cost when they do nothing but
their I/O, in the same language and event loop as the real ones (Python, uvloop), each a separate
process as in the stack:

- a *server* that frames an HTTP/1.1 request by its Content-Length and writes a fixed 201 reply,
  optionally after appending a 200-byte record to a file and fsyncing it (the journal's durable
  append; the real shard also decodes, matches, publishes and counts);
- a *proxy* that relays each request over a pool of keep-alive connections to the server and the
  reply back (the gateway without routing, validation or metrics);
- a *client* that sends one request per scheduled instant of an open-model schedule over a few
  keep-alive connections and reads the reply (the load generator without a flow, histogram or
  report).

No parsing beyond the framing, no allocation beyond the buffers. Process CPU (user + system, from
/proc) over the measured window, after a warm-up: a server's cell per request it handled (with three
servers behind the proxy, a third of them each, as three shards behind the gateway), every other
cell and "all" per request the client completed. A hop whose floor here is above its
target cannot meet the target on this machine whatever its code does, short of serving several
requests per wake-up.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time

import psutil

from matchlab.service import event_loop_runner
from matchlab.stack.probes import free_port

BODY = (b'{"orderId":"floor-00000000000000000001","symbol":"TEST-ASSET-A","side":"BUY",'
        b'"price":100.25,"quantity":10,"traderId":"trader-0001","timestamp":1764331200000}')
REQUEST = (b"POST /orders HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY))
REPLY_BODY = b'{"orderId":"floor-00000000000000000001","status":"ACCEPTED","fills":[]}'
REPLY = (b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
         % (len(REPLY_BODY), REPLY_BODY))
RECORD = b"x" * 200
CONNECTIONS = 16
WARMUP_S = 2.0


def split_messages(buf: bytearray) -> list[bytes]:
    """Complete HTTP/1.1 messages at the front of buf (removed from it), framed by Content-Length."""
    out = []
    while True:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return out
        at = buf.find(b"Content-Length: ", 0, end)
        length = int(buf[at + 16:buf.index(b"\r\n", at)]) if at >= 0 else 0
        total = end + 4 + length
        if len(buf) < total:
            return out
        out.append(bytes(buf[:total]))
        del buf[:total]


class Framed(asyncio.Protocol):
    """A connection that hands each complete message it receives to on_message."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        for message in split_messages(self.buf):
            self.on_message(message)

    def on_message(self, message: bytes) -> None:
        raise NotImplementedError


class Pool:
    """The proxy's keep-alive connections to the server, each carrying one request at a time."""

    def __init__(self) -> None:
        self.free: collections.deque = collections.deque()
        self.waiting: collections.deque = collections.deque()  # (front connection, request)

    def send(self, front: Framed, message: bytes) -> None:
        if not self.free:
            self.waiting.append((front, message))
            return
        up = self.free.popleft()
        up.front = front
        up.transport.write(message)

    def release(self, up: Upstream) -> None:
        self.free.append(up)
        if self.waiting:
            self.send(*self.waiting.popleft())


class Upstream(Framed):
    def __init__(self, pool: Pool) -> None:
        super().__init__()
        self.pool, self.front = pool, None

    def on_message(self, message: bytes) -> None:
        self.front.transport.write(message)
        self.pool.release(self)


async def serve(port: int, upstream_ports: list[int], journal: str | None) -> None:
    loop = asyncio.get_running_loop()
    fd = os.open(journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if journal else None
    pools = [Pool() for _ in upstream_ports]
    for upstream_port, pool in zip(upstream_ports, pools):
        for _ in range(CONNECTIONS):
            _, up = await loop.create_connection(lambda p=pool: Upstream(p), "127.0.0.1", upstream_port)
            pool.free.append(up)
    turn = itertools.cycle(pools) if pools else None

    class Front(Framed):
        def on_message(self, message: bytes) -> None:
            if turn is not None:  # a proxy: the next server in turn, as the gateway spreads symbols
                next(turn).send(self, message)
                return
            if fd is not None:
                os.write(fd, RECORD)
                os.fsync(fd)
            self.transport.write(REPLY)

    server = await loop.create_server(Front, "127.0.0.1", port, reuse_address=True)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


class Client(Framed):
    """One keep-alive connection of the client; a request scheduled while every connection is busy
    waits in the shared backlog, and its latency counts from its scheduled instant (open model)."""

    def __init__(self, run: Run) -> None:
        super().__init__()
        self.run, self.scheduled = run, 0.0

    def send(self, scheduled: float) -> None:
        self.scheduled = scheduled
        self.transport.write(REQUEST)

    def on_message(self, message: bytes) -> None:
        run = self.run
        run.latencies.append(time.perf_counter() - self.scheduled)
        if run.backlog:
            self.send(run.backlog.popleft())
        else:
            run.free.append(self)
        if len(run.latencies) == run.n:
            run.done.set_result(None)


class Run:
    def __init__(self, n: int, done: asyncio.Future) -> None:
        self.n, self.done, self.queued = n, done, 0
        self.free: collections.deque[Client] = collections.deque()
        self.backlog: collections.deque[float] = collections.deque()
        self.latencies: list[float] = []


async def drive(port: int, rate: float, seconds: float) -> dict:
    loop = asyncio.get_running_loop()
    n, gap = int(rate * seconds), 1.0 / rate
    run = Run(n, loop.create_future())
    for _ in range(CONNECTIONS):
        _, conn = await loop.create_connection(lambda: Client(run), "127.0.0.1", port)
        run.free.append(conn)
    start = loop.time() + 0.05
    offset = time.perf_counter() - loop.time()  # the schedule in perf_counter's time, for latencies
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)

    def fire(i: int) -> None:
        at = start + i * gap
        # libuv's timers tick in milliseconds and may fire early: count from the later of the two.
        scheduled = min(at + offset, time.perf_counter())
        if run.free:
            run.free.popleft().send(scheduled)
        else:
            run.backlog.append(scheduled)
            run.queued += 1
        if i + 1 < n:
            loop.call_at(at + gap, fire, i + 1)

    loop.call_at(start, fire, 0)
    try:
        await asyncio.wait_for(asyncio.shield(run.done), seconds + 10)
    except TimeoutError:
        pass  # reported below as fewer answers than scheduled
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    latencies = sorted(run.latencies)
    ok = max(len(latencies), 1)
    return {"ok": len(latencies), "unanswered": n - len(latencies), "queued": run.queued,
            "user_us": (cpu1.ru_utime - cpu0.ru_utime) / ok * 1e6,
            "system_us": (cpu1.ru_stime - cpu0.ru_stime) / ok * 1e6,
            "p50_ms": latencies[len(latencies) // 2] * 1e3 if latencies else float("nan"),
            "p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3 if latencies else float("nan")}


def start(args: list[str]) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise SystemExit(f"bench_floor: a helper process failed to start: {args}")
    return proc


def client_run(port: int, rate: float, seconds: float) -> dict:
    out = subprocess.run([sys.executable, __file__, "--client", str(port), "--rate", str(rate),
                          "--seconds", str(seconds)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def cpu_split(proc: subprocess.Popen) -> tuple[float, float]:
    t = psutil.Process(proc.pid).cpu_times()
    return t.user, t.system


def scenario(name: str, rate: float, seconds: float, journal: str | None, servers: int = 1,
             proxied: bool = False) -> None:
    ports = [free_port() for _ in range(servers)]
    procs = {}
    try:  # started inside, so a helper that fails to start takes those already running down with it
        for i, server_port in enumerate(ports):
            own = f"{journal}.{i}" if journal else None  # each server its own file, as each shard its own journal
            procs[f"server{i + 1}" if servers > 1 else "server"] = start(
                ["--serve", str(server_port)] + (["--journal", own] if own else []))
        port = ports[0]
        if proxied:
            port = free_port()
            procs["proxy"] = start(["--serve", str(port), "--upstream", ",".join(map(str, ports))])
        client_run(port, rate, WARMUP_S)
        before = {k: cpu_split(p) for k, p in procs.items()}
        result = client_run(port, rate, seconds)
        after = {k: cpu_split(p) for k, p in procs.items()}
    finally:
        for p in procs.values():
            p.kill()
            p.wait()
    ok = max(result["ok"], 1)
    cells = [(f"client {result['user_us'] + result['system_us']:5.0f} "
              f"({result['user_us']:.0f}u+{result['system_us']:.0f}s)")]
    total = result["user_us"] + result["system_us"]
    for k in procs:
        u, s = ((after[k][i] - before[k][i]) / ok * 1e6 for i in (0, 1))
        total += u + s
        share = servers if k.startswith("server") else 1  # a server's cell: per request it handled
        cells.append(f"{k} {(u + s) * share:5.0f} ({u * share:.0f}u+{s * share:.0f}s)")
    print(f"{name:<37} {rate:>6,.0f}/s  " + "  ".join(cells) + f"  all {total:5.0f}  "
          f"p50/p99 {result['p50_ms']:.2f}/{result['p99_ms']:.2f} ms  ok {result['ok']:,} "
          f"unanswered {result['unanswered']} queued {result['queued']}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window per scenario (default 20)")
    parser.add_argument("--dir", default=None, help="folder for the fsync'd file (default: a temporary one here)")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream", default="", help=argparse.SUPPRESS)
    parser.add_argument("--journal", help=argparse.SUPPRESS)
    parser.add_argument("--client", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        event_loop_runner()(serve(args.serve, [int(p) for p in args.upstream.split(",") if p], args.journal))
        return
    if args.client:
        print(json.dumps(event_loop_runner()(drive(args.client, args.rate, args.seconds))))
        return
    print(f"{os.cpu_count()} cores; CPU µs per request (user+system) over {args.seconds:g} s after "
          f"{WARMUP_S:g} s of warm-up; {CONNECTIONS} keep-alive connections per hop")
    with tempfile.TemporaryDirectory(dir=args.dir or ".") as folder:
        journal = os.path.join(folder, "floor.journal")
        scenario("client -> server", 500, args.seconds, None)
        scenario("client -> server + fsync", 500, args.seconds, journal)
        scenario("client -> server", 1500, args.seconds, None)
        scenario("client -> proxy -> server + fsync", 1000, args.seconds, journal, proxied=True)
        scenario("client -> proxy -> 3 servers + fsync", 1500, args.seconds, journal, servers=3, proxied=True)


if __name__ == "__main__":
    main()
