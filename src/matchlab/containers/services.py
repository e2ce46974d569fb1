"""What runs as containers: one ``ContainerSpec`` per container, derived from the stack's service specs.

Each container has its image (a Dockerfile target), its environment (the service's own ``to_env``), the
ports it serves, the named volumes it mounts, its readiness check and its CPU and memory budget (the
same ``matchlab.topology`` budgets the manifests request). Services find each other by name on the
run's network (``broker``, ``me-shard-a``, ...), so the list is fixed before anything starts. Each shard's
event relay is a container of its own from the shard's image, mounting the same journal volume.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from matchlab.admin_auth import ADMIN_TOKEN_ENV
from matchlab.relay.config import RelayConfig
from matchlab.stack.prometheus_config import render_config
from matchlab.stack.spec import Role, ServiceSpec, Topology, Wiring, app_services, relay_spec
from matchlab.topology import APP_HTTP_PORT, APP_METRICS_PORT, KAFKA_PORT, RELAY_METRICS_PORT

BROKER = "broker"
PROMETHEUS = "prometheus"
PROMETHEUS_PORT = 9090
PROMETHEUS_CONFIG = "/etc/prometheus/prometheus.yml"
PROMETHEUS_RULES = Path("/etc/prometheus/rules/recording-rules.yaml")  # baked into the image
JOURNAL_MOUNT = "/data"


@dataclass(frozen=True)
class Readiness:
    """Ready when GET ``path`` on ``port`` answers 200; without a path, when ``port`` accepts a connection."""

    port: int
    path: str | None = None


# Start waves: every container of a wave starts at once, then all are awaited, before the next wave.
BROKER_WAVE, SHARD_WAVE, GATEWAY_WAVE, PROMETHEUS_WAVE = range(4)


@dataclass(frozen=True)
class ContainerSpec:
    name: str  # the service's name, as experiments and faults use it; also its name on the network
    image: str  # a Dockerfile target (matchlab.images.targets.TARGETS)
    budget: str  # the key of its CPU and memory budgets in matchlab.topology
    wave: int  # when it starts (see the waves above): what it needs has started before
    ready: Readiness
    environment: dict[str, str] = field(default_factory=dict)
    ports: tuple[int, ...] = ()  # container ports published on 127.0.0.1
    volumes: dict[str, str] = field(default_factory=dict)  # volume key (one per run) -> mount path
    files: dict[str, str] = field(default_factory=dict)  # path -> text, put in place before the first start
    labels: dict[str, str] = field(default_factory=dict)  # the service's own (app, shard)
    shard: str | None = None
    command: tuple[str, ...] | None = None  # instead of the image's own
    metrics_port: int = APP_METRICS_PORT  # where Prometheus scrapes an application container


def journal_volume(shard: str) -> str:
    return f"journal-{shard}"


def _wiring(spec: ServiceSpec) -> Wiring:
    return Wiring(APP_HTTP_PORT, APP_METRICS_PORT, bind_host="0.0.0.0",
                  kafka_bootstrap=f"{BROKER}:{KAFKA_PORT}", wal_path=Path(JOURNAL_MOUNT),
                  shard_urls={s: f"http://me-shard-{s}:{APP_HTTP_PORT}" for s in spec.shard_symbols}
                  if spec.role is Role.GATEWAY else {}, relay_metrics_port=RELAY_METRICS_PORT)


def app_container(spec: ServiceSpec, admin_token: str, gateway_workers: int = 1) -> ContainerSpec:
    """A shard or the gateway, wired to its neighbours by their names on the network."""
    config = spec.config(_wiring(spec))
    if spec.role is Role.GATEWAY:
        config = replace(config, workers=gateway_workers)
    return ContainerSpec(
        name=spec.name, image=spec.role.value, budget=spec.role.value,
        wave=SHARD_WAVE if spec.role is Role.SHARD else GATEWAY_WAVE, ready=Readiness(APP_HTTP_PORT, spec.ready_path),
        environment={**config.to_env(), ADMIN_TOKEN_ENV: admin_token},
        ports=(APP_HTTP_PORT, APP_METRICS_PORT),
        volumes={journal_volume(spec.shard): JOURNAL_MOUNT} if spec.role is Role.SHARD else {},
        labels=dict(spec.labels), shard=spec.shard,
    )


def relay_container(shard: ServiceSpec) -> ContainerSpec | None:
    """The shard's event relay (from the shard's image, on its journal volume); None where the shard publishes
    its own events or has no broker (``ShardConfig.relayed``)."""
    config = shard.config(_wiring(shard))
    if not config.relayed:
        return None
    spec = relay_spec(shard)
    return ContainerSpec(
        name=spec.name, image=Role.SHARD.value, budget=spec.role.value, wave=SHARD_WAVE,
        ready=Readiness(RELAY_METRICS_PORT, spec.ready_path),
        environment=RelayConfig.for_shard(config, RELAY_METRICS_PORT).to_env(), ports=(RELAY_METRICS_PORT,),
        volumes={journal_volume(shard.shard): JOURNAL_MOUNT}, labels=dict(spec.labels), shard=shard.shard,
        command=("python", "-m", spec.module), metrics_port=RELAY_METRICS_PORT,
    )


def scrape_targets(apps: list[ContainerSpec]) -> list[tuple[str, str, dict[str, str]]]:
    """Prometheus' targets: every application container's metrics port, by name, with its labels."""
    return [(spec.labels.get("app", spec.name), f"{spec.name}:{spec.metrics_port}", spec.labels) for spec in apps]


def container_specs(topology: Topology, admin_token: str, shard_symbols: dict[str, list[str]] | None = None,
                    gateway_workers: int = 1) -> list[ContainerSpec]:
    """Every container of the stack in start order: broker, shards (each with its relay, in the same wave),
    gateway, Prometheus."""
    apps = []
    for spec in app_services(topology, shard_symbols):
        apps.append(app_container(spec, admin_token, gateway_workers))
        relay = relay_container(spec) if spec.role is Role.SHARD else None
        if relay is not None:
            apps.append(relay)
    broker = ContainerSpec(name=BROKER, image="broker", budget="broker", wave=BROKER_WAVE,
                           ready=Readiness(KAFKA_PORT), ports=(KAFKA_PORT,))
    prometheus = ContainerSpec(
        name=PROMETHEUS, image="prometheus", budget="prometheus", wave=PROMETHEUS_WAVE,
        ready=Readiness(PROMETHEUS_PORT, "/-/ready"),
        ports=(PROMETHEUS_PORT,), volumes={"prometheus": "/prometheus"},
        files={PROMETHEUS_CONFIG: render_config(scrape_targets(apps), PROMETHEUS_RULES)},
    )
    return [broker, *apps, prometheus]
