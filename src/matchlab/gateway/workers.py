"""``GATEWAY_WORKERS=N``: N gateway processes on one port, supervised, their metrics merged.

One gateway process is one event loop on one core. With N workers each binds
HTTP_PORT with SO_REUSEPORT, so the kernel spreads new connections over them
(a keep-alive connection stays with the worker that accepted it), and each
serves its metrics on a private port. The process that was started, whose PID
the harness knows, serves none of the traffic: it supervises the workers and
serves their metrics merged on METRICS_PORT (counters, histograms and
additive gauges summed), so every reader still sees one gateway.

It stops its workers when it is told to stop, and stops all of them and exits
1 when any worker dies: a gateway that lost part of its capacity should be
seen gone, not keep running short. Workers die with it if it is killed
(``PR_SET_PDEATHSIG``, Linux). On Kubernetes the same need is met by the
Deployment's replicas, each scraped on its own.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import replace

import aiohttp
from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from matchlab.gateway.config import GatewayConfig
from matchlab.ports import free_port

log = logging.getLogger(__name__)

STOP_GRACE_S = 15.0  # a worker's own graceful stop takes up to 10 s (SHUTDOWN_GRACE_S)
SCRAPE_TIMEOUT_S = 5.0
WATCH_EVERY_S = 0.5
PR_SET_PDEATHSIG = 1
# Per-process facts that do not add up across workers: the earliest start, and any one worker's limits.
EARLIEST = ("_created", "process_start_time_seconds")
ANY_ONE = ("process_max_fds", "python_info")


def merge_pages(pages: Iterable[str]) -> list[Metric]:
    """One exposition of several workers' pages: each series summed over the workers (see EARLIEST, ANY_ONE)."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple, float]] = {}
    for page in pages:
        for family in text_string_to_metric_families(page):
            families.setdefault(family.name, Metric(family.name, family.documentation, family.type,
                                                             family.unit))
            series = values.setdefault(family.name, {})
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if key not in series:
                    series[key] = sample.value
                elif sample.name.endswith(EARLIEST):
                    series[key] = min(series[key], sample.value)
                elif not sample.name.startswith(ANY_ONE):
                    series[key] += sample.value
    for name, family in families.items():
        for (sample_name, labels), value in values[name].items():
            family.add_sample(sample_name, dict(labels), value)
    return list(families.values())


class _Families:
    """What ``generate_latest`` needs of a registry: the families to write."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def die_with_supervisor() -> None:
    """In a worker: be sent SIGTERM when the supervisor ends, however it ends (Linux); exit now if it already has."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # orphaned before the request took effect
        raise SystemExit("gateway worker: the supervisor is gone")


class Supervisor:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        # HTTP_PORT and METRICS_PORT are not bound yet: the OS could offer either as a worker's metrics port
        taken = (config.http_port, config.metrics_port)
        self.worker_configs = [replace(config, workers=1, worker_index=i,
                                       metrics_port=free_port(config.bind_host, avoid=taken))
                               for i in range(config.workers)]
        self.workers: list[subprocess.Popen] = []
        self._session: aiohttp.ClientSession | None = None

    def start_workers(self) -> None:
        for worker in self.worker_configs:
            env = worker.to_env()
            self.workers.append(subprocess.Popen([sys.executable, "-m", "matchlab.gateway"],
                                                 env={**_inherited_env(), **env}))
        log.info("gateway workers: %s on port %d (metrics merged on %d)",
                 ", ".join(f"PID {p.pid} (metrics {w.metrics_port})" for p, w in zip(self.workers, self.worker_configs)),
                 self.config.http_port, self.config.metrics_port)

    async def metrics(self, _request: web.Request) -> web.Response:
        assert self._session is not None
        urls = [f"http://{w.bind_host}:{w.metrics_port}/metrics" for w in self.worker_configs]
        try:
            pages = await asyncio.gather(*(self._page(url) for url in urls))
        except (aiohttp.ClientError, TimeoutError) as exc:
            # A partial sum would make counters fall back: fail the scrape instead, naming why.
            return web.Response(status=503, text=f"a gateway worker's metrics could not be read: {exc!r}\n")
        body = generate_latest(_Families(merge_pages(pages)))
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _page(self, url: str) -> str:
        assert self._session is not None
        async with self._session.get(url) as resp:
            resp.raise_for_status()
            return await resp.text()

    async def health(self, _request: web.Request) -> web.Response:
        alive = sum(p.poll() is None for p in self.workers)
        status = 200 if alive == len(self.workers) else 503
        return web.json_response({"status": "UP" if status == 200 else "DOWN", "component": "edge-gateway",
                                  "workers": len(self.workers), "alive": alive}, status=status)

    async def run(self) -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        app = web.Application()
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/health", self.health)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S))
        failed = None
        try:
            await web.TCPSite(runner, self.config.bind_host, self.config.metrics_port, reuse_address=True).start()
            self.start_workers()
            while not stop.is_set() and failed is None:
                failed = next((p for p in self.workers if p.poll() is not None), None)
                try:
                    await asyncio.wait_for(stop.wait(), WATCH_EVERY_S)
                except TimeoutError:
                    pass
            if stop.is_set():
                failed = None  # told to stop: a worker that got the same signal first is no failure
            if failed is not None:
                log.error("gateway worker PID %d exited with %s: stopping the other workers", failed.pid,
                          failed.returncode)
        finally:
            await loop.run_in_executor(None, self.stop_workers)
            await self._session.close()
            await runner.cleanup()
        return 1 if failed is not None else 0

    def stop_workers(self) -> None:
        """SIGTERM to each worker still running (each drains its requests), SIGKILL after the grace period."""
        for p in self.workers:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.workers:
            try:
                p.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                log.warning("gateway worker PID %d did not stop in %.0f s: killing it", p.pid, STOP_GRACE_S)
                p.kill()
                p.wait()


def _inherited_env() -> dict[str, str]:
    """The supervisor's own environment (PATH, PYTHONPATH, ...) but its worker count: each worker is one."""
    return {k: v for k, v in os.environ.items() if k != "GATEWAY_WORKERS"}
