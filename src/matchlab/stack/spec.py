"""What runs, described once, independent of where it runs.

A ``Topology`` names the shards (and whether a gateway fronts them); from it
``app_services`` derives each application service's identity, settings and
labels. Backends decide the rest: ports, addresses, processes or pods.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from matchlab.admin_auth import bearer
from matchlab.loadgen.targets import SHARD_SYMBOLS

APP_HTTP_PORT = 8080  # in-cluster ports (DESIGN.md §2); the local backend picks free ones
APP_METRICS_PORT = 9091
TOPICS = ("matches", "orders")


class Topology(enum.Enum):
    SINGLE = "single"  # shard a, straight (ASR 1)
    MULTI = "multi"  # shards a, b, c behind the edge gateway (ASR 2)

    @property
    def shards(self) -> tuple[str, ...]:
        return ("a",) if self is Topology.SINGLE else ("a", "b", "c")

    @property
    def has_gateway(self) -> bool:
        return self is Topology.MULTI


class Role(enum.Enum):
    SHARD = "shard"
    GATEWAY = "gateway"


@dataclass(frozen=True)
class ServiceSpec:
    """One application service: its name, module, settings and labels."""

    name: str
    role: Role
    module: str
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    shard: str | None = None
    # Readiness (may take traffic) vs liveness (/health: the process serves):
    # a shard whose journal cannot write is alive but not ready.
    ready_path: str = "/health"


# The shard keeps acknowledged order ids for de-duplication (10 minutes by default). A window that is
# still filling looks like memory growth to the B2-B3 trend test; the harness' clients retry within
# seconds, so a minute of retention is plenty and the window is full before B2 begins.
EXPERIMENT_ID_WINDOW_S = 60


def shard_spec(shard: str) -> ServiceSpec:
    return ServiceSpec(
        name=f"me-shard-{shard}",
        role=Role.SHARD,
        module="matchlab.shard",
        env={"SHARD_ID": shard, "SHARD_SYMBOLS": ",".join(SHARD_SYMBOLS[shard]),
             "ORDER_ID_WINDOW_S": str(EXPERIMENT_ID_WINDOW_S)},
        labels={"app": "matching-engine", "shard": shard},
        shard=shard,
        ready_path="/ready",
    )


def gateway_spec(shards: tuple[str, ...]) -> ServiceSpec:
    return ServiceSpec(
        name="edge-gateway",
        role=Role.GATEWAY,
        module="matchlab.gateway",
        env={"SHARD_SYMBOLS_MAP": ",".join(f"{s}={':'.join(SHARD_SYMBOLS[s])}" for s in shards)},
        labels={"app": "edge-gateway"},
    )


def app_services(topology: Topology) -> list[ServiceSpec]:
    """Shards first, then the gateway (which needs their addresses)."""
    services = [shard_spec(s) for s in topology.shards]
    if topology.has_gateway:
        services.append(gateway_spec(topology.shards))
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

    @property
    def remote_write(self) -> str:
        return f"{self.prometheus}/api/v1/write"

    @property
    def admin_headers(self) -> dict[str, str]:
        return bearer(self.admin_token)
