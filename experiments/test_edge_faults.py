"""Edge faults (marker ``faults``): slow clients, connection floods and overload at the gateway.

A real shard and a real gateway on 127.0.0.1 (no broker, no Prometheus: these
faults live entirely at the HTTP edge), attacked by plain sockets and driven
by the project's open-model load generator. Timeouts and limits are set
shorter than the operator defaults so the suite stays around two minutes.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.process
import multiprocessing.queues
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from matchlab.admin_auth import new_token
from matchlab.experiment.registry import P99_BAR_S
from matchlab.loadgen.flow import OrderFlow
from matchlab.loadgen.profile import LoadProfile
from matchlab.loadgen.runner import OpenModelRunner, run_load
from matchlab.loadgen.saturation import saturate_async
from matchlab.loadgen.targets import SHARD_SYMBOLS, flow_source, gateway_targets
from matchlab.promtext import counter_total, histogram_buckets, histogram_quantile, scrape
from matchlab.service import event_loop_runner
from matchlab.stack.cpu_budget import CpuBudgets
from matchlab.stack.probes import HttpProbe, free_port
from matchlab.stack.process import ManagedProcess
from matchlab.stack.spec import Wiring, gateway_config, shard_config

pytestmark = pytest.mark.faults

READY_S = 20.0
SLACK_S = 1.5  # timers, scheduling on a shared 2-core VM
SLOW_CLIENTS = 1_500
HOLD_S = 30.0
HOLD_RATE = 200.0
# The bar. Measured 4.4-18.2 ms with the machine otherwise quiet (31 ms at best, 95-330 ms
# with other work on the 2 cores, before the leaner order path).
HOLD_P99_S = 0.050
MAX_SHED_RATIO = 0.05  # fast 503s while the gateway is busiest are an answer, not a failure (seen: 0-2.6 %)
# Overload (c): the shard is the bottleneck, on a CPU budget as a Kubernetes pod would be, so that
# twice its knee does not also starve the load generator, which shares this machine's two cores
# (without a budget the knee is the whole machine's, and the client-side lag then measures the
# client: accepted p99 0.6-3.7 s). The gateway is set as a latency-first edge: shed an order once 16
# are in flight to the shard (~20 ms of queue at its knee) or once it waited 50 ms in the gateway.
OVERLOAD_BUDGETS = {"shard-a": 0.3}
OVERLOAD_INFLIGHT = 16
SHED_QUEUE_WAIT_MS = 50
CLIENT_POOL = 256  # the load generator's connections in the overload test: a realistic client pool
HEADER_TIMEOUT_S = 5.0
FLOOD_LIMIT = 400
FLOOD_HEADER_TIMEOUT_S = 3.0
FLOOD_S = 10.0
PARTIAL_HEADER = b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Ty"


@dataclass
class Edge:
    gateway: str
    gateway_metrics: str
    shard_metrics: str


@pytest.fixture
def edge(tmp_path: Path, request) -> Iterator:
    """Start shard a and a gateway in front of it with the given gateway settings (and CPU budgets, by
    process name); stop both after."""
    started: list[ManagedProcess] = []
    cgroups = CpuBudgets(f"edge-{time.time_ns()}")

    def make(budgets: dict[str, float] | None = None, **gateway_env: str) -> Edge:
        token = new_token()
        sh, sm, gh, gm = (free_port() for _ in range(4))
        shard_env = shard_config("a", Wiring(sh, sm, wal_path=tmp_path / "wal-a.log"), admin_token=token).to_env()
        shard = ManagedProcess("shard-a", [sys.executable, "-m", "matchlab.shard"], tmp_path / "shard-a.log", shard_env)
        started.append(shard)
        shard.start()
        shard.wait_ready(HttpProbe(f"http://127.0.0.1:{sh}/health"), READY_S)
        wiring = Wiring(gh, gm, shard_urls={"a": f"http://127.0.0.1:{sh}"})
        gateway = ManagedProcess("gateway", [sys.executable, "-m", "matchlab.gateway"], tmp_path / "gateway.log",
                                 {**gateway_config(wiring, admin_token=token).to_env(), **gateway_env})
        started.append(gateway)
        gateway.start()
        gateway.wait_ready(HttpProbe(f"http://127.0.0.1:{gh}/health"), READY_S)
        for proc in (shard, gateway):
            if proc.name in (budgets or {}):
                cgroups.limit(proc.name, proc.pid, budgets[proc.name])
        return Edge(f"http://127.0.0.1:{gh}", f"http://127.0.0.1:{gm}/metrics", f"http://127.0.0.1:{sm}/metrics")

    yield make
    for proc in reversed(started):
        proc.stop()
    cgroups.close()


def gauge(url: str, name: str) -> float:
    for family in text_string_to_metric_families(scrape(url)):
        for s in family.samples:
            if s.name == name:
                return s.value
    raise AssertionError(f"{name} not exported by {url}")


def order_source(edge: Edge, seed: int):
    return flow_source(OrderFlow(SHARD_SYMBOLS["a"], seed=seed, id_prefix=f"e{seed}-"),
                       gateway_targets(edge.gateway, ["a"]))


@dataclass
class SlowClients:
    """Holds ``count`` partial-header connections until ``until``, reopening each one the server closes."""

    url: str
    count: int
    until: float  # time.monotonic()
    wait_s: float  # how long one connection may stay open before that counts as never closed

    def __post_init__(self) -> None:
        self.lifetimes: list[float] = []
        self.never_closed = 0
        self.connect_errors = 0

    async def _hold(self, delay: float) -> None:
        host, port = self.url.removeprefix("http://").split(":")
        await asyncio.sleep(delay)
        while time.monotonic() < self.until:
            try:
                reader, writer = await asyncio.open_connection(host, int(port))
            except OSError:
                self.connect_errors += 1
                await asyncio.sleep(0.2)
                continue
            opened = time.monotonic()
            try:
                writer.write(PARTIAL_HEADER)
                await asyncio.wait_for(reader.read(), self.wait_s)  # until the server closes
                self.lifetimes.append(time.monotonic() - opened)
            except TimeoutError:
                self.never_closed += 1
            except OSError:
                self.lifetimes.append(time.monotonic() - opened)
            finally:
                writer.close()

    def _main(self, out) -> None:
        async def all_of_them() -> None:  # staggered over ~3 s, as a real attacker ramps
            await asyncio.gather(*(self._hold(i * 3.0 / self.count) for i in range(self.count)))

        event_loop_runner()(all_of_them())  # uvloop: the attacker spends less of the shared CPU
        out.put((self.lifetimes, self.never_closed, self.connect_errors))

    def run(self) -> _Attack:
        """In its own process: sharing the load generator's GIL would slow the orders it times."""
        ctx = multiprocessing.get_context("fork")  # forked before the load generator starts any thread
        out = ctx.Queue()
        proc = ctx.Process(target=self._main, args=(out,), name="slow-clients", daemon=True)
        proc.start()
        return _Attack(self, proc, out)


@dataclass
class _Attack:
    clients: SlowClients
    proc: multiprocessing.process.BaseProcess
    out: multiprocessing.queues.Queue

    def join(self, timeout: float) -> None:
        """Collect the attacker's findings; kill it (by its PID) if it overruns."""
        try:
            c = self.clients
            c.lifetimes, c.never_closed, c.connect_errors = self.out.get(timeout=timeout)
        finally:
            self.proc.join(5)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join()


def test_slow_clients_are_cut_off_and_orders_keep_their_p99(edge):
    """(a) 1,500 partial-header connections for 30 s while 200 orders/s flow."""
    stack = edge(HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S))
    attackers = SlowClients(stack.gateway, SLOW_CLIENTS, time.monotonic() + HOLD_S, HEADER_TIMEOUT_S + SLACK_S)
    attack = attackers.run()
    time.sleep(3.5)  # all of them connected
    peak: list[float] = []
    sampler_stop = threading.Event()

    def sample_open() -> None:
        while not sampler_stop.wait(1.0):
            peak.append(gauge(stack.gateway_metrics, "gw_connections_open"))

    sampler = threading.Thread(target=sample_open)
    sampler.start()
    try:
        result = run_load(LoadProfile.constant(HOLD_RATE, HOLD_S - 4), order_source(stack, 1))
    finally:
        sampler_stop.set()
        sampler.join()
        attack.join(HOLD_S + 30)
    p99_s = result.latency_ms["p99"] / 1000
    gw = scrape(stack.gateway_metrics)
    gateway_p99_s = histogram_quantile(0.99, histogram_buckets(gw, "gw_request_duration_seconds"))
    timed_out = counter_total(gw, "gw_requests_timed_out", phase="header")
    print(f"slow clients: {SLOW_CLIENTS} held, peak open {max(peak):.0f}, {len(attackers.lifetimes)} cut off "
          f"(longest {max(attackers.lifetimes):.2f}s, header timeout {HEADER_TIMEOUT_S:g}s), "
          f"{attackers.never_closed} never closed; orders {result.ok}/{result.scheduled} ok at {HOLD_RATE:g}/s, "
          f"p99 {p99_s * 1000:.1f} ms client-side, {gateway_p99_s * 1000:.1f} ms at the gateway")
    assert max(peak) >= 0.9 * SLOW_CLIENTS, f"the attack never held its connections (peak {max(peak)})"
    assert attackers.never_closed == 0, f"{attackers.never_closed} partial connections outlived the header timeout"
    assert max(attackers.lifetimes) < HEADER_TIMEOUT_S + SLACK_S
    assert timed_out >= SLOW_CLIENTS
    assert set(result.errors) <= {"503"} and result.dropped == 0, (result.errors, result.dropped)
    assert result.errors.get("503", 0) <= MAX_SHED_RATIO * result.scheduled
    assert p99_s < HOLD_P99_S, f"order p99 {p99_s * 1000:.1f} ms during the hold (bar {HOLD_P99_S * 1000:g} ms)"


def probe_fresh_connection(url: str, body: bytes) -> tuple[str, float]:
    """One order on a new connection: its status (or error name) and how long the answer took."""
    started = time.monotonic()
    try:
        r = httpx.post(f"{url}/orders", content=body, headers={"Content-Type": "application/json"}, timeout=3.0)
        status = str(r.status_code)
        if status == "503":
            assert r.headers.get("Retry-After") == "1"
    except httpx.HTTPError as exc:
        status = type(exc).__name__
    return status, time.monotonic() - started


def test_a_connection_flood_gets_fast_503s_and_service_returns_within_a_header_timeout(edge):
    """(b) A flood beyond MAX_CONNECTIONS, then abandoned (sockets left open, silent)."""
    stack = edge(MAX_CONNECTIONS=str(FLOOD_LIMIT), HEADER_TIMEOUT_S=str(FLOOD_HEADER_TIMEOUT_S))
    order = b'{"orderId":"%s","symbol":"TEST-ASSET-A","side":"BUY","type":"LIMIT","price":14000,"quantity":1}'
    keepalive = httpx.Client(base_url=stack.gateway, timeout=3.0)  # connected before the flood
    assert keepalive.post("/orders", content=order % b"k0", headers={"Content-Type": "application/json"}).status_code == 200
    # The flood reopens what the server cuts for FLOOD_S, then stops reopening but leaves the
    # last wave open and silent: the worst way to stop, only the header timeout frees those slots.
    flood_ends = time.monotonic() + FLOOD_S
    flooders = SlowClients(stack.gateway, FLOOD_LIMIT + 200, flood_ends, FLOOD_HEADER_TIMEOUT_S + SLACK_S)
    flood = flooders.run()
    probes: list[tuple[float, str, float]] = []  # (seconds after the flood ended, status, answer time)
    kept: list[int] = []
    i = 0
    while (now := time.monotonic()) < flood_ends + FLOOD_HEADER_TIMEOUT_S + 4:
        i += 1
        status, took = probe_fresh_connection(stack.gateway, order % f"p{i}".encode())
        probes.append((now - flood_ends, status, took))
        kept.append(keepalive.post("/orders", content=order % f"k{i}".encode(),
                                   headers={"Content-Type": "application/json"}).status_code)
        time.sleep(0.1)
    flood.join(30)
    keepalive.close()
    refused = counter_total(scrape(stack.gateway_metrics), "gw_connections_refused")
    during = [p for p in probes if p[0] < 0]
    after = [p for p in probes if p[0] >= 0]
    first_ok_for_good = next(t for j, (t, _s, _d) in enumerate(after) if all(s == "200" for _t, s, _d in after[j:]))
    print(f"flood: {len(during)} probes during it ({sum(s == '503' for _t, s, _d in during)} fast 503, "
          f"{sum(s == '200' for _t, s, _d in during)} served, slowest answer {max(d for *_x, d in during):.3f}s); "
          f"{refused:.0f} connections refused; service back {first_ok_for_good:.2f}s after the flood stopped "
          f"(header timeout {FLOOD_HEADER_TIMEOUT_S:g}s); keep-alive client {kept.count(200)}/{len(kept)} served")
    assert refused > 0, "the flood never reached the connection limit"
    assert any(s == "503" for _t, s, _d in during), "no probe met the limit during the flood"
    assert all(s in ("200", "503") for _t, s, _d in probes), sorted({s for _t, s, _d in probes})
    assert max(d for *_x, d in probes) < 1.0, "a probe waited: the answer past the limit must be fast"
    assert first_ok_for_good <= FLOOD_HEADER_TIMEOUT_S + SLACK_S
    assert set(kept) == {200}, "a client connected before the flood must keep being served"


class _AcceptedLatency:
    """A load-generator listener (the exporter hook) keeping the latencies of accepted orders only."""

    def __init__(self) -> None:
        self.ok_us: list[int] = []

    def __call__(self, latency_us: int | None, status: str, _target: str) -> None:
        if status == "200" and latency_us is not None:
            self.ok_us.append(latency_us)

    async def push_forever(self) -> None:  # the hook's other half: nothing to push
        await asyncio.Event().wait()

    def p99_s(self) -> float:
        ordered = sorted(self.ok_us)
        return ordered[int(0.99 * (len(ordered) - 1))] / 1e6


def test_twice_the_knee_is_shed_with_503s_and_accepted_orders_keep_the_bar(edge):
    """(c) The knee from a short closed-loop run, then twice that open-loop."""
    why = CpuBudgets("probe").available()
    if why:
        pytest.skip(f"needs a CPU budget for the shard (root and a writable cgroup cpu controller): {why}")
    stack = edge(budgets=OVERLOAD_BUDGETS, SHED_QUEUE_WAIT_MS=str(SHED_QUEUE_WAIT_MS),
                 MAX_INFLIGHT_PER_SHARD=str(OVERLOAD_INFLIGHT))
    saturation = event_loop_runner()(saturate_async(order_source(stack, 2), 16, 3.0))
    knee = saturation.ok_rate
    accepted = _AcceptedLatency()
    runner = OpenModelRunner(max_in_flight=CLIENT_POOL, exporter=accepted)
    result = event_loop_runner()(runner.run(LoadProfile.constant(2 * knee, 12.0), order_source(stack, 3)))
    gw = scrape(stack.gateway_metrics)
    shed = counter_total(gw, "gw_requests_shed", shard="a")
    received = counter_total(scrape(stack.shard_metrics), "me_orders_received")
    gateway_p99_s = histogram_quantile(0.99, histogram_buckets(gw, "gw_request_duration_seconds"))
    print(f"overload (shard budget {OVERLOAD_BUDGETS['shard-a']:g} CPU): knee ~{knee:.0f}/s, offered {2 * knee:.0f}/s, "
          f"sent {result.sent}, accepted {result.ok}, "
          f"shed {shed:.0f} ({shed / max(1, result.sent):.0%}), other errors "
          f"{ {k: v for k, v in result.errors.items() if k != '503'} }, dropped {result.dropped}, "
          f"accepted p99 client-side {accepted.p99_s() * 1000:.1f} ms (client schedule lag p99 "
          f"{result.schedule_error_ms['p99']:.0f} ms), gateway p99 {gateway_p99_s * 1000:.1f} ms "
          f"(bar {P99_BAR_S * 1000:g} ms)")
    assert shed > 0 and result.errors.get("503", 0) >= shed, "no shedding at twice the knee"
    assert set(result.errors) <= {"503"}, result.errors
    assert accepted.p99_s() < P99_BAR_S, f"accepted orders' client-side p99 {accepted.p99_s() * 1000:.0f} ms"
    # Nothing accepted is lost, nothing shed slipped through: the shard holds exactly the 200s.
    assert received == saturation.ok + result.ok, (received, saturation.ok, result.ok)
