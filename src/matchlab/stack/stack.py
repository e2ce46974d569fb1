"""The composition root: one running stack, reached only through its endpoints.

``Stack`` owns a backend and a topology; entering it brings everything up
(and tears down what started if that fails), leaving it tears everything
down. Experiments use ``endpoints`` and the few operations here, never a
backend's internals, so they run unchanged on every backend.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Self

import httpx

from matchlab.observe.promql import PromClient
from matchlab.stack.backend import Backend
from matchlab.stack.spec import Endpoints, Topology

log = logging.getLogger(__name__)
CONTROL_TIMEOUT_S = 30.0


class Stack:
    def __init__(self, backend: Backend, topology: Topology, run_dir: Path, keep: bool = False) -> None:
        self.backend = backend
        self.topology = topology
        self.run_dir = run_dir
        self.keep = keep
        self._endpoints: Endpoints | None = None
        self.started_at = 0.0
        self.cold_start_s = 0.0
        self._prom: PromClient | None = None

    @property
    def endpoints(self) -> Endpoints:
        if self._endpoints is None:
            raise RuntimeError("the stack is not running")
        return self._endpoints

    def start(self) -> Stack:
        t0 = time.perf_counter()
        self._endpoints = self.backend.start(self.topology, self.run_dir)
        self.cold_start_s = time.perf_counter() - t0
        self.started_at = time.time()
        log.info("%s stack (%s) up in %.1f s", self.topology.value, self.backend.name, self.cold_start_s)
        return self

    def stop(self) -> None:
        if self.keep and self._endpoints is not None:
            log.warning("leaving the %s stack running: %s", self.topology.value, self._endpoints)
            return
        self.backend.stop()
        self._endpoints = None
        if self._prom is not None:
            self._prom.close()
            self._prom = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def prometheus(self) -> PromClient:
        """One client per stack: building an HTTP client (TLS context included) costs milliseconds."""
        if self._prom is None or self._prom.url != self.endpoints.prometheus.rstrip("/"):
            self._prom = PromClient(self.endpoints.prometheus)
        return self._prom

    def reset_shard(self, shard: str) -> None:
        """Empty every book of a shard (journaled: survives a restart)."""
        resp = httpx.post(f"{self.endpoints.shards[shard]}/admin/reset", headers=self.endpoints.admin_headers,
                          timeout=CONTROL_TIMEOUT_S)
        resp.raise_for_status()

    def inject_match_delay(self, shard: str, delay_ms: float) -> None:
        """Make every order of ``shard`` wait ``delay_ms`` between durable and matched (0: stop); a known
        effect for the experiments' power checks."""
        resp = httpx.post(f"{self.endpoints.shards[shard]}/admin/inject", headers=self.endpoints.admin_headers,
                          json={"matchDelayMs": delay_ms}, timeout=CONTROL_TIMEOUT_S)
        resp.raise_for_status()

    def book(self, shard: str, symbol: str) -> dict:
        return httpx.get(f"{self.endpoints.shards[shard]}/book/{symbol}", timeout=CONTROL_TIMEOUT_S).json()
