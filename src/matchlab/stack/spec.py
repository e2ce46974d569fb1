"""What runs, described once, independent of where it runs.

A ``Topology`` names the shards (and whether a gateway fronts them); from it
``app_services`` derives each application service's identity, settings and
labels. Backends decide the rest: ports, addresses, processes or pods, which
they hand to ``ServiceSpec.environment`` as a ``Wiring``; the service's own
config class turns the result into its environment (``to_env``), so no
backend writes a variable name by hand.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from pathlib import Path

from matchlab.admin_auth import bearer
from matchlab.edge.limits import EdgeLimits
from matchlab.gateway.config import GatewayConfig
from matchlab.relay.config import RelayConfig
from matchlab.shard.config import DEFAULT_RING_BUFFER_SIZE, DEFAULT_WAL_SIZE_MB, ShardConfig
from matchlab.topology import RELAY_METRICS_PORT, SHARD_IDS, SHARD_SYMBOLS, event_partition


class Topology(enum.Enum):
    SINGLE = "single"  # shard a, straight (ASR 1)
    MULTI = "multi"  # shards a, b, c behind the edge gateway (ASR 2)
    # The scaling search's stack: MULTI itself for three shards; with --max-shards K > 3, K shards behind the
    # gateway with the symbols re-spread (matchlab.topology.spread_symbols), a layout the backend is given.
    SCALING = "scaling"

    @property
    def shards(self) -> tuple[str, ...]:
        """The standard three shards; a stack given a layout has its shards in ``Endpoints.shard_symbols``."""
        return SHARD_IDS[:1] if self is Topology.SINGLE else SHARD_IDS

    @property
    def has_gateway(self) -> bool:
        return self is not Topology.SINGLE


class Role(enum.Enum):
    SHARD = "shard"
    RELAY = "relay"  # a shard's event relay: beside its shard, on its journal
    GATEWAY = "gateway"


# The shard keeps acknowledged order ids for de-duplication (10 minutes by default). A window that is
# still filling looks like memory growth to the B2-B3 trend test; the harness' clients retry within
# seconds, so a minute of retention is plenty and the window is full before B2 begins.
EXPERIMENT_ID_WINDOW_S = 60


@dataclass(frozen=True)
class Wiring:
    """Where a backend puts one service: what differs between local processes and pods."""

    http_port: int
    metrics_port: int
    bind_host: str = "127.0.0.1"
    kafka_bootstrap: str = ""  # shards
    wal_path: Path = Path(".")  # shards
    shard_urls: dict[str, str] = field(default_factory=dict)  # the gateway: shard id -> base URL
    relay_metrics_port: int = RELAY_METRICS_PORT  # a shard's relay (the rest of its wiring is its shard's)


def shard_config(shard: str, wiring: Wiring, symbols: list[str] | None = None, **tuning) -> ShardConfig:
    """A shard's configuration: its symbols from the topology unless given, ``tuning`` as ShardConfig fields."""
    config = ShardConfig(
        shard_id=shard, symbols=frozenset(SHARD_SYMBOLS[shard] if symbols is None else symbols),
        http_port=wiring.http_port, metrics_port=wiring.metrics_port, bind_host=wiring.bind_host,
        kafka_bootstrap=wiring.kafka_bootstrap, wal_path=wiring.wal_path, wal_size_mb=DEFAULT_WAL_SIZE_MB,
        ring_buffer_size=DEFAULT_RING_BUFFER_SIZE, fsync=True, event_partition=event_partition(shard),
        edge=EdgeLimits.from_env({}),  # the limits the service would pick itself: to_env leaves them out
    )
    return replace(config, **tuning)


def gateway_config(wiring: Wiring, shard_symbols: dict[str, list[str]] | None = None, **tuning) -> GatewayConfig:
    """The gateway's configuration for the shards of ``wiring.shard_urls`` (their symbols from the topology
    unless given); ``tuning`` as GatewayConfig fields."""
    shard_symbols = shard_symbols or {s: SHARD_SYMBOLS[s] for s in wiring.shard_urls}
    config = GatewayConfig(
        http_port=wiring.http_port, metrics_port=wiring.metrics_port, bind_host=wiring.bind_host,
        shard_urls=dict(wiring.shard_urls),
        symbol_owner={symbol: shard for shard, symbols in shard_symbols.items() for symbol in symbols},
        edge=EdgeLimits.from_env({}),
    )
    return replace(config, **tuning)


@dataclass(frozen=True)
class ServiceSpec:
    """One application service: its name, module, symbols and labels."""

    name: str
    role: Role
    module: str
    # The symbol map this service knows: its own shard's, or (the gateway) every shard's it fronts.
    shard_symbols: dict[str, list[str]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    shard: str | None = None
    # Readiness (may take traffic) vs liveness (/health: the process serves):
    # a shard whose journal cannot write is alive but not ready.
    ready_path: str = "/health"

    def config(self, wiring: Wiring) -> ShardConfig | RelayConfig | GatewayConfig:
        if self.role is Role.GATEWAY:
            return gateway_config(wiring, self.shard_symbols)
        shard = shard_config(self.shard, wiring, self.shard_symbols[self.shard], order_id_window_s=EXPERIMENT_ID_WINDOW_S)
        return shard if self.role is Role.SHARD else RelayConfig.for_shard(shard, wiring.relay_metrics_port)

    def environment(self, wiring: Wiring) -> dict[str, str]:
        """The service's environment where ``wiring`` puts it (no admin token: backends add it their way)."""
        return self.config(wiring).to_env()


def shard_spec(shard: str, symbols: list[str] | None = None) -> ServiceSpec:
    return ServiceSpec(
        name=f"me-shard-{shard}",
        role=Role.SHARD,
        module="matchlab.shard",
        shard_symbols={shard: list(SHARD_SYMBOLS[shard] if symbols is None else symbols)},
        labels={"app": "matching-engine", "shard": shard},
        shard=shard,
        ready_path="/ready",
    )


def relay_spec(shard: ServiceSpec) -> ServiceSpec:
    """The event relay that runs beside ``shard`` (with ``EVENTS_MODE=relay`` and a broker: ``ShardConfig.relayed``).

    Its labels keep it apart from the matching engine's in every query (``app``), and tie it to its shard.
    """
    return ServiceSpec(
        name=f"me-relay-{shard.shard}",
        role=Role.RELAY,
        module="matchlab.relay",
        shard_symbols=dict(shard.shard_symbols),
        labels={"app": "event-relay", "shard": shard.shard},
        shard=shard.shard,
        ready_path="/ready",
    )


def gateway_spec(shard_symbols: dict[str, list[str]]) -> ServiceSpec:
    return ServiceSpec(
        name="edge-gateway",
        role=Role.GATEWAY,
        module="matchlab.gateway",
        shard_symbols={s: list(symbols) for s, symbols in shard_symbols.items()},
        labels={"app": "edge-gateway"},
    )


def layout(topology: Topology, shard_symbols: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """Shard id -> symbols: the topology's shards with their standard symbols, or ``shard_symbols`` (a re-spread
    layout from ``matchlab.topology.spread_symbols``) when given."""
    return {s: list(v) for s, v in shard_symbols.items()} if shard_symbols else \
        {s: list(SHARD_SYMBOLS[s]) for s in topology.shards}


def app_services(topology: Topology, shard_symbols: dict[str, list[str]] | None = None) -> list[ServiceSpec]:
    """Shards first, then the gateway (which needs their addresses); ``shard_symbols`` as in ``layout``."""
    shards = layout(topology, shard_symbols)
    services = [shard_spec(s, symbols) for s, symbols in shards.items()]
    if topology.has_gateway:
        services.append(gateway_spec(shards))
    return services


@dataclass(frozen=True)
class Endpoints:
    """How experiments reach a running stack, whatever the backend."""

    shards: dict[str, str]  # shard id -> base URL
    shard_metrics: dict[str, str]  # shard id -> /metrics URL
    gateway: str | None
    gateway_metrics: str | None
    prometheus: str
    broker: str  # bootstrap servers
    grafana: str | None = None
    grafana_auth: tuple[str, str] | None = field(default=None, repr=False)  # (user, password): annotations
    # The stack's admin token (matchlab.admin_auth): the harness' own control calls send it.
    # Kept out of repr, which --keep-stack logs.
    admin_token: str = field(default="", repr=False)
    # Which symbols each shard owns: the standard map unless the stack runs a re-spread layout.
    shard_symbols: dict[str, list[str]] = field(default_factory=lambda: layout(Topology.MULTI))
    # shard id -> its event relay's base URL (/metrics, /stats), where the backend exposes one; empty when the
    # shards publish their own events (EVENTS_MODE=inprocess) or the relays are not reachable from here.
    relays: dict[str, str] = field(default_factory=dict)

    @property
    def remote_write(self) -> str:
        return f"{self.prometheus}/api/v1/write"

    @property
    def admin_headers(self) -> dict[str, str]:
        return bearer(self.admin_token)
