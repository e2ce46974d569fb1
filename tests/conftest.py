"""Fixtures for the service tests: real shard processes and a real broker on 127.0.0.1."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from matchlab.admin_auth import bearer, new_token
from matchlab.errors import ConfigError, PrerequisiteError
from matchlab.relay.config import RelayConfig
from matchlab.shard.config import ShardConfig
from matchlab.stack.broker import TansuBroker
from matchlab.stack.probes import HttpProbe, free_port
from matchlab.stack.process import ManagedProcess
from matchlab.stack.prometheus import PrometheusServer
from matchlab.stack.spec import Wiring, gateway_config, shard_config

SHARD_READY_S = 20.0
# The admin token every service under test gets (as a stack would); clients send it by default.
ADMIN_TOKEN = new_token()


@dataclass
class ShardHandle:
    """A shard process under test and how to reach it; with a broker (and EVENTS_MODE=relay), its relay too."""

    process: ManagedProcess
    shard_id: str
    http_port: int
    metrics_port: int
    wal_path: Path
    env: dict[str, str] = field(default_factory=dict)
    token: str = ADMIN_TOKEN
    relay: ManagedProcess | None = None
    relay_port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def relay_url(self) -> str:
        return f"http://127.0.0.1:{self.relay_port}"

    def start(self) -> ShardHandle:
        """Start the shard (again), then its relay if it has one that is not running."""
        self.process.start()
        self.process.wait_ready(HttpProbe(f"{self.url}/health"), SHARD_READY_S)
        if self.relay is not None and not self.relay.running():
            self.start_relay()
        return self

    def start_relay(self) -> ShardHandle:
        self.relay.start()
        self.relay.wait_ready(HttpProbe(f"{self.relay_url}/ready"), SHARD_READY_S)
        return self

    def relay_stats(self) -> dict:
        return httpx.get(f"{self.relay_url}/stats", timeout=5.0).json()

    def stop(self) -> None:
        self.process.stop()
        if self.relay is not None:
            self.relay.stop()

    def client(self, token: str | None = ADMIN_TOKEN) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10.0, headers=bearer(token))


@pytest.fixture
def shard_factory(tmp_path: Path) -> Iterator:
    """Start shards with free ports and a private journal; all are stopped afterwards.

    ``extra`` are raw environment variables laid over the shard's configured environment (a test of
    bad input passes values no configuration could hold)."""
    started: list[ShardHandle] = []

    def make(shard_id: str = "a", kafka: str = "", start: bool = True, **extra: str) -> ShardHandle:
        http_port, metrics_port = free_port(), free_port()
        wal = tmp_path / f"wal-{shard_id}-{len(started)}.log"
        wiring = Wiring(http_port, metrics_port, kafka_bootstrap=kafka, wal_path=wal)
        env = {**shard_config(shard_id, wiring, admin_token=ADMIN_TOKEN).to_env(), **extra}
        proc = ManagedProcess(
            f"shard-{shard_id}", [sys.executable, "-m", "matchlab.shard"], tmp_path / f"shard-{shard_id}-{len(started)}.log", env
        )
        handle = ShardHandle(proc, shard_id, http_port, metrics_port, wal, env)
        try:
            config = ShardConfig.from_env(env)
        except ConfigError:  # a test of bad settings: the shard refuses them, no relay to start
            config = None
        if config is not None and config.relayed:  # as the stack runs it: a relay beside the shard, on its journal
            handle.relay_port = free_port()
            relay_env = RelayConfig.for_shard(config, handle.relay_port).to_env()
            handle.relay = ManagedProcess(f"relay-{shard_id}", [sys.executable, "-m", "matchlab.relay"],
                                          tmp_path / f"relay-{shard_id}-{len(started)}.log", relay_env)
        started.append(handle)
        return handle.start() if start else handle

    yield make
    for handle in started:
        handle.stop()


@dataclass
class GatewayHandle:
    process: ManagedProcess
    http_port: int
    metrics_port: int
    token: str = ADMIN_TOKEN

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def client(self, token: str | None = ADMIN_TOKEN) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=15.0, headers=bearer(token))


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator:
    """Start gateways in front of given shard URLs (with their symbols); all are stopped afterwards.

    ``extra`` are raw environment variables laid over the gateway's configured environment."""
    started: list[GatewayHandle] = []

    def make(shard_urls: dict[str, str], start: bool = True, **extra: str) -> GatewayHandle:
        http_port, metrics_port = free_port(), free_port()
        wiring = Wiring(http_port, metrics_port, shard_urls=shard_urls)
        env = {**gateway_config(wiring, admin_token=ADMIN_TOKEN).to_env(), **extra}
        proc = ManagedProcess("gateway", [sys.executable, "-m", "matchlab.gateway"], tmp_path / f"gateway-{len(started)}.log", env)
        handle = GatewayHandle(proc, http_port, metrics_port)
        started.append(handle)
        if start:
            proc.start()
            proc.wait_ready(HttpProbe(f"{handle.url}/health"), SHARD_READY_S)
        return handle

    yield make
    for handle in started:
        handle.process.stop()


@pytest.fixture
def trivial_server(tmp_path: Path) -> Iterator:
    """Start trivial HTTP targets (optionally stalling once); all are stopped afterwards."""
    started: list[ManagedProcess] = []

    def make(*args: str) -> str:
        port = free_port()
        proc = ManagedProcess(
            "trivial-server",
            [sys.executable, "-m", "matchlab.loadgen.trivial_server", "--port", str(port), *args],
            tmp_path / f"trivial-{len(started)}.log",
        )
        started.append(proc)
        proc.start()
        proc.wait_ready(HttpProbe(f"http://127.0.0.1:{port}/health"), SHARD_READY_S)
        return f"http://127.0.0.1:{port}"

    yield make
    for proc in started:
        proc.stop()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    with TansuBroker(free_port(), log) as b:
        yield b


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[PrometheusServer]:
    """A bare real Prometheus on 127.0.0.1 (remote-write receiver on, nothing scraped)."""
    try:
        server = PrometheusServer(free_port(), tmp_path / "prom", "global:\n  scrape_interval: 5s\n")
    except PrerequisiteError as exc:
        pytest.skip(f"prerequisite missing: {exc}")
    with server:
        yield server
