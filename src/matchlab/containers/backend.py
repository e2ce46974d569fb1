"""The docker backend: every service a container from the project's images, on a network of its own.

Start: images (built only where their content changed) -> the run's network -> broker (topics created)
-> shards (in parallel) -> gateway -> Prometheus, each container published on 127.0.0.1 only, with the
CPU and memory budgets of ``matchlab.topology`` (``--cpus``, a memory limit, ``--cpuset-cpus`` when
asked), journals and Prometheus' TSDB on named volumes, readiness through each service's HTTP check.
Everything is entered in the ledger before it is created and labelled with the run, so teardown
(normal, failed start, Ctrl-C, or the next run after a hard kill) removes exactly what this run made.
Faults as on the local backend: broker outage = pause, shard crash = kill, restart = start again (the
journal's volume carries the books over). Logs go to ``<run_dir>/logs/<service>.log`` at teardown.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

from matchlab.admin_auth import new_token
from matchlab.containers.engine_objects import (
    LABEL_READY,
    LABEL_READY_PORT,
    LABEL_SERVICE,
    container_tar,
    host_port,
    log_text,
)
from matchlab.containers.ledger import RUN_LABEL, ResourceLedger
from matchlab.containers.services import BROKER, PROMETHEUS, PROMETHEUS_PORT, ContainerSpec, container_specs
from matchlab.errors import ProcessError
from matchlab.images.build import BuiltImage, build_images
from matchlab.images.engine import engine_client
from matchlab.interrupts import interrupt_after
from matchlab.stack.broker import create_topics
from matchlab.stack.probes import HttpProbe, PortProbe, free_port
from matchlab.stack.process import stop_after_failure
from matchlab.stack.spec import Endpoints, Topology, layout
from matchlab.topology import (
    APP_HTTP_PORT,
    APP_METRICS_PORT,
    CPU_BUDGETS,
    KAFKA_PORT,
    MEMORY_BUDGETS,
    RELAY_METRICS_PORT,
    quantity_bytes,
)
from matchlab.waiting import wait_until

log = logging.getLogger(__name__)

LEDGER_FILE = "docker-resources.json"  # test runs
UP_LEDGER_FILE = "up-docker.json"  # `matchlab up`: a test run never removes what it lists
READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 10  # SIGTERM, then SIGKILL: as the local backend stops a process
POLL_S = 0.2
LOG_TAIL_LINES = 40
LOOPBACK = "127.0.0.1"
EXITED = "exited"


def run_name(run_dir: Path, topology: Topology) -> str:
    """``matchlab-<run folder>-<topology>``, as the engine's names allow."""
    return "matchlab-" + re.sub(r"[^a-zA-Z0-9_.-]+", "-", f"{run_dir.parent.name}-{topology.value}").strip("-").lower()


def _refused(exc: BaseException) -> bool:
    import docker.errors

    return isinstance(exc, docker.errors.APIError)


class DockerBackend:
    name = "docker"

    def __init__(self, reports_dir: Path, ledger_file: str = LEDGER_FILE,
                 shard_symbols: dict[str, list[str]] | None = None, gateway_workers: int = 1,
                 cpuset: str | None = None) -> None:
        self.ledger = ResourceLedger(reports_dir / ledger_file)
        self.shard_symbols = shard_symbols
        self.gateway_workers = gateway_workers
        self.cpuset = cpuset
        self.admin_token = new_token()
        self.run = ""
        self.run_dir: Path | None = None
        self.images: dict[str, BuiltImage] = {}
        self.cold_start_s = 0.0
        self._client = None
        self._containers: dict[str, object] = {}  # service name -> docker Container
        self._volumes: set[str] = set()  # created by this run
        self._ncpu = 0

    @classmethod
    def attach(cls, reports_dir: Path, ledger_file: str, run_dir: Path | None = None) -> DockerBackend:
        """The backend of a stack another process started (``matchlab up``), found by its ledger and labels."""
        backend = cls(reports_dir, ledger_file)
        client = backend._client = engine_client()
        backend._ncpu = int(client.info().get("NCPU") or 1)
        backend.run_dir = run_dir
        for run in backend.ledger.runs():
            backend.run = run
            found = {c.name: c for c in client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={run}"})}
            for entry in backend.ledger.entries():  # in start order
                if entry.kind == "container" and entry.name in found:
                    backend._containers[found[entry.name].labels[LABEL_SERVICE]] = found[entry.name]
        return backend

    def states(self) -> dict[str, str]:
        """Service name -> healthy, paused, exited (code N) or unhealthy, in start order."""
        states = {}
        for name, container in self._containers.items():
            container.reload()
            if container.status != "running":
                code = container.attrs["State"].get("ExitCode")
                states[name] = container.status if container.status != "exited" else f"exited (code {code})"
                continue
            try:
                self._probe(name).check()
                states[name] = "healthy"
            except OSError as exc:
                states[name] = f"unhealthy ({type(exc).__name__})"
        return states

    # -- bring up ------------------------------------------------------------

    def start(self, topology: Topology, run_dir: Path) -> Endpoints:
        client = self._client = engine_client()  # a missing or stopped engine: one line, before anything
        for line in self.ledger.delete(client):
            log.warning("reaped a leftover of an earlier run: %s", line)
        started = time.perf_counter()
        self.run, self.run_dir = run_name(run_dir, topology), run_dir
        self._ncpu = int(client.info().get("NCPU") or 1)
        try:
            specs = container_specs(topology, self.admin_token, self.shard_symbols, self.gateway_workers)
            self.images = build_images(dict.fromkeys(spec.image for spec in specs), client)
            self._create_network()
            for wave in sorted({spec.wave for spec in specs}):  # a wave starts at once, then is awaited
                in_wave = [spec for spec in specs if spec.wave == wave]
                for spec in in_wave:
                    self._start(spec)
                for spec in in_wave:
                    self._wait_ready(spec.name)
                if any(spec.name == BROKER for spec in in_wave):
                    create_topics(self._address(BROKER, KAFKA_PORT))
        except BaseException as exc:
            stop_after_failure(self.stop, "the docker stack")
            if _refused(exc):  # one line saying what the engine refused, not its client's traceback
                raise ProcessError(f"the Docker engine refused to start the stack: {exc.explanation or exc}") from None
            raise
        self.cold_start_s = time.perf_counter() - started
        return self.endpoints(topology)

    def _labels(self, **extra: str) -> dict[str, str]:
        return {RUN_LABEL: self.run, **extra}

    def _create_network(self) -> None:
        self.ledger.add("network", self.run, self.run)
        with interrupt_after():  # the engine finishes a create its client stopped waiting for: let it return
            self._client.networks.create(self.run, driver="bridge", labels=self._labels())

    def _volume(self, key: str) -> str:
        name = f"{self.run}-{key}"
        if name in self._volumes:  # a shard's journal, mounted by its relay too
            return name
        self._volumes.add(name)
        self.ledger.add("volume", name, self.run)
        with interrupt_after():
            self._client.volumes.create(name, labels=self._labels())
        return name

    def _start(self, spec: ContainerSpec) -> None:
        name = f"{self.run}-{spec.name}"
        cpus = min(CPU_BUDGETS[spec.budget].limit, self._ncpu)
        memory = quantity_bytes(MEMORY_BUDGETS[spec.budget].limit)
        labels = self._labels(**{LABEL_SERVICE: spec.name, LABEL_READY_PORT: str(spec.ready.port),
                                 LABEL_READY: spec.ready.path or ""}, **spec.labels)
        volumes = {self._volume(key): {"bind": path, "mode": "rw"} for key, path in spec.volumes.items()}
        self.ledger.add("container", name, self.run)
        # A Ctrl-C during the create request would leave the engine creating a container after teardown had
        # looked for it and found nothing (a CI run left one that way): the interrupt waits for the reply.
        with interrupt_after():
            container = self._client.containers.create(
                self.images[spec.image].tag, command=list(spec.command) if spec.command else None, name=name,
                hostname=spec.name, environment=spec.environment,
                labels=labels, network=self.run, ports={f"{p}/tcp": (LOOPBACK, free_port()) for p in spec.ports},
                volumes=volumes, nano_cpus=int(cpus * 1e9), mem_limit=memory, memswap_limit=memory,
                cpuset_cpus=self.cpuset, detach=True,
                # Reachable by its service name on the network (the gateway's shard map, Prometheus' targets).
                networking_config={self.run: self._client.api.create_endpoint_config(aliases=[spec.name])})
        for path, text in spec.files.items():
            container.put_archive(str(Path(path).parent), container_tar(Path(path).name, text))
        container.start()
        self._containers[spec.name] = container

    def _container(self, name: str):
        if name not in self._containers:
            raise ProcessError(f"no service named {name!r}; known: {sorted(self._containers)}")
        return self._containers[name]

    def _address(self, name: str, port: int) -> str:
        return f"{LOOPBACK}:{host_port(self._container(name), port)}"

    def _probe(self, name: str) -> HttpProbe | PortProbe:
        """The service's readiness check, through its published port (the container's labels say which)."""
        container = self._container(name)
        port, path = int(container.labels[LABEL_READY_PORT]), container.labels[LABEL_READY]
        host, number = self._address(name, port).rsplit(":", 1)
        return HttpProbe(f"http://{host}:{number}{path}") if path else PortProbe(host, int(number))

    def _wait_ready(self, name: str) -> None:
        """Until the service's check passes; at once with its log when its container exits instead."""
        container, probe = self._container(name), self._probe(name)

        def ready() -> bool | str:
            container.reload()
            return EXITED if container.status in ("exited", "dead") else probe.check()

        state = wait_until(ready, READY_TIMEOUT_S, f"{name} ({probe.describe()})", interval=POLL_S,
                           log_tail=lambda: log_text(container, LOG_TAIL_LINES))
        if state == EXITED:
            raise ProcessError(f"{name}'s container exited while starting (code {container.attrs['State']['ExitCode']})"
                               f":\n{log_text(container, LOG_TAIL_LINES)}")

    def endpoints(self, topology: Topology) -> Endpoints:
        def url(name: str, port: int, path: str = "") -> str:
            return f"http://{self._address(name, port)}{path}"

        shards = layout(topology, self.shard_symbols)
        has_gateway = "edge-gateway" in self._containers
        return Endpoints(
            shards={s: url(f"me-shard-{s}", APP_HTTP_PORT) for s in shards},
            shard_metrics={s: url(f"me-shard-{s}", APP_METRICS_PORT, "/metrics") for s in shards},
            gateway=url("edge-gateway", APP_HTTP_PORT) if has_gateway else None,
            gateway_metrics=url("edge-gateway", APP_METRICS_PORT, "/metrics") if has_gateway else None,
            prometheus=url(PROMETHEUS, PROMETHEUS_PORT), broker=self._address(BROKER, KAFKA_PORT),
            admin_token=self.admin_token, shard_symbols=shards,
            relays={s: url(f"me-relay-{s}", RELAY_METRICS_PORT) for s in shards if f"me-relay-{s}" in self._containers},
        )

    # -- operations ----------------------------------------------------------

    def stop(self) -> None:
        """Collect every container's log into the run folder, then remove what this run created."""
        if self._client is None:
            return
        self.collect_logs()
        self.ledger.delete(self._client, self.run)
        self._containers.clear()

    def collect_logs(self) -> None:
        if self.run_dir is None:
            return
        logs = self.run_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for name, container in self._containers.items():
            try:
                (logs / f"{name}.log").write_text(log_text(container))
            except Exception as exc:  # noqa: BLE001 - a log lost must not keep the rest running
                log.warning("log of %s not collected: %s", name, exc)

    def remove_recorded(self) -> list[str]:
        """Remove everything the ledger lists, of every run in it (`matchlab down`); what was removed."""
        removed = self.ledger.delete(self._client)
        self._containers.clear()
        return removed

    def pause_broker(self) -> None:
        """``docker pause`` (the cgroup freezer, as SIGSTOP locally); pausing a paused broker is no error."""
        broker = self._container(BROKER)
        broker.reload()
        if broker.status != "paused":
            broker.pause()

    def resume_broker(self) -> None:
        """``docker unpause``; resuming a running broker is no error (callers resume in ``finally`` too)."""
        broker = self._container(BROKER)
        broker.reload()
        if broker.status == "paused":
            broker.unpause()

    def kill_service(self, name: str) -> None:
        """SIGKILL the container; it stays down until ``restart_service``."""
        container = self._container(name)
        container.kill()
        wait_until(lambda: container.reload() or container.status != "running", READY_TIMEOUT_S,
                   f"{name}'s container to stop", interval=POLL_S)

    def restart_service(self, name: str) -> None:
        """Stop it (SIGTERM, then SIGKILL) if running, start the same container again, wait until ready."""
        if name == BROKER:
            raise ProcessError("the broker keeps its topics in memory: pause and resume it instead of a restart")
        container = self._container(name)
        container.reload()
        if container.status == "running":
            container.stop(timeout=STOP_GRACE_S)
        container.start()
        self._wait_ready(name)

    def load_driver(self):
        return None  # the load runs on this machine, against the published ports

    def processes(self) -> dict:
        return {}  # services run in containers, not as this machine's processes the harness could budget

    def log_tails(self) -> dict[str, str]:
        return {name: log_text(c, LOG_TAIL_LINES) for name, c in self._containers.items()}

    def facts(self) -> dict[str, str]:
        budgets = ", ".join(f"{role} {min(CPU_BUDGETS[role].limit, self._ncpu):g} CPU / {MEMORY_BUDGETS[role].limit}"
                            for role in ("shard", "gateway", "broker", "prometheus"))
        facts = {"backend": "docker (a container per service on the run's bridge network, ports on 127.0.0.1)",
                 "cold start": f"{self.cold_start_s:.1f} s", "container limits": budgets,
                 "images": ", ".join(i.tag for i in self.images.values()),
                 "grafana": "absent (no Grafana image is built: the report renders the dashboard's panels itself)"}
        if self.cpuset:
            facts["cpuset"] = f"every container on CPUs {self.cpuset}"
        if self.gateway_workers > 1:
            facts["gateway"] = f"{self.gateway_workers} worker processes in its container (GATEWAY_WORKERS)"
        return facts
