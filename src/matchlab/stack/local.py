"""The embedded local backend: every service a process on 127.0.0.1.

Start order: broker (topics created) -> shards, each with its event relay
(in parallel) -> gateway -> Prometheus (targets known by then) -> Grafana
when installed. A relay is a process of its own (its own process group, in
the same PID registry), started when its shard's settings say the relay
publishes (``ShardConfig.relayed``), stopped with the stack, and known to
``status``, ``kill`` and ``restart`` by its name (``me-relay-<shard>``). Each stop is
registered the moment its service has started, so a failure half-way, an
exception or Ctrl-C tears down exactly what had started, in reverse order.
Logs go to ``<run_dir>/logs/<service>.log``; journals to ``<run_dir>/data``.
"""

from __future__ import annotations

import logging
import sys
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from matchlab.admin_auth import ADMIN_TOKEN_ENV, new_token
from matchlab.errors import ProcessError
from matchlab.relay.config import RelayConfig
from matchlab.shard.config import EventsMode, ShardConfig
from matchlab.stack.broker import TansuBroker
from matchlab.stack.grafana import GrafanaServer, find_grafana
from matchlab.stack.pidfile import PidRegistry
from matchlab.stack.probes import HttpProbe, free_port
from matchlab.stack.process import ManagedProcess, stop_after_failure
from matchlab.stack.prometheus import PrometheusServer, find_binary
from matchlab.stack.prometheus_config import render_config
from matchlab.stack.spec import Endpoints, Role, ServiceSpec, Topology, Wiring, app_services, layout, relay_spec
from matchlab.stack.state import ServiceRecord, probe_to_dict

log = logging.getLogger(__name__)

APP_READY_TIMEOUT_S = 30.0
PID_FILE = "stack-pids.json"


class LocalBackend:
    name = "local"

    def __init__(self, reports_dir: Path, pid_file: str = PID_FILE,
                 shard_symbols: dict[str, list[str]] | None = None, load_workers: int | None = None,
                 shard_env: dict[str, str] | None = None, gateway_workers: int = 1) -> None:
        # None: the topology's shards with their standard symbols; else this layout (spec.layout).
        self.shard_symbols = shard_symbols
        self.load_workers = load_workers  # None: load from pytest's process; N: N load-generator processes
        self.shard_env = dict(shard_env or {})  # settings laid over every shard's (e.g. INJECT_MATCH_DELAY_MS)
        if gateway_workers < 1:
            raise ValueError(f"the gateway needs at least one worker, got {gateway_workers}")
        self.gateway_workers = gateway_workers  # GATEWAY_WORKERS: processes serving the gateway's port
        self.registry = PidRegistry(reports_dir / pid_file)
        self._stack = ExitStack()
        self._apps: dict[str, tuple[ManagedProcess, str]] = {}  # name -> (process, readiness URL)
        self.broker: TansuBroker | None = None
        self.prometheus: PrometheusServer | None = None
        self.grafana: GrafanaServer | None = None
        self.grafana_absent_reason = ""
        self.cold_start_s = 0.0
        self.admin_token = new_token()  # one per stack; reaches the services by environment only

    # -- bring up ------------------------------------------------------------

    def start(self, topology: Topology, run_dir: Path) -> Endpoints:
        find_binary()  # fail fast, before starting anything, if Prometheus is missing
        self.registry.reap()
        logs, data = run_dir / "logs", run_dir / "data"
        started = time.perf_counter()
        try:
            self.broker = TansuBroker(free_port(), logs / "broker.log")
            self.broker.process.registry = self.registry
            self._stack.callback(self.broker.stop)
            self.broker.start()
            shards, shard_metrics, relays, targets = self._start_apps(topology, logs, data)
            gateway = gateway_metrics = None
            if topology.has_gateway:
                gateway, gateway_metrics, target = self._start_gateway(topology, shards, logs)
                targets.append(target)
            self.prometheus = PrometheusServer(free_port(), run_dir / "prometheus", render_config(targets))
            self.prometheus.process.registry = self.registry
            self._stack.callback(self.prometheus.stop)
            self.prometheus.start()
            grafana_url = self._start_grafana(run_dir)
        except BaseException:
            stop_after_failure(self.stop, "the local stack")
            raise
        self.cold_start_s = time.perf_counter() - started
        return Endpoints(
            shards=shards,
            shard_metrics=shard_metrics,
            gateway=gateway,
            gateway_metrics=gateway_metrics,
            prometheus=self.prometheus.url,
            broker=self.broker.bootstrap,
            grafana=grafana_url,
            grafana_auth=("admin", self.grafana.admin_password) if self.grafana is not None else None,
            admin_token=self.admin_token,
            shard_symbols=layout(topology, self.shard_symbols),
            relays=relays,
        )

    def _process(self, spec: ServiceSpec, env: dict[str, str], logs: Path) -> ManagedProcess:
        if spec.role is not Role.RELAY:  # the relay serves no admin route: it does not get the token
            env = {**env, ADMIN_TOKEN_ENV: self.admin_token}  # the environment, never argv: argv is recorded
        proc = ManagedProcess(
            spec.name, [sys.executable, "-m", spec.module], logs / f"{spec.name}.log", env, registry=self.registry
        )
        self._stack.callback(proc.stop)
        return proc.start()

    def _start_apps(self, topology: Topology, logs: Path, data: Path):
        shards, shard_metrics, relays, targets, waiting = {}, {}, {}, [], []
        for spec in app_services(topology, self.shard_symbols):
            if spec.role is not Role.SHARD:
                continue
            wiring = Wiring(free_port(), free_port(), kafka_bootstrap=self.broker.bootstrap,
                            wal_path=data / f"wal-{spec.shard}.log", relay_metrics_port=free_port())
            env = spec.environment(wiring) | self.shard_env
            waiting.append(self._start_app(spec, env, logs, wiring.http_port))  # all shards start at once...
            shards[spec.shard] = f"http://127.0.0.1:{wiring.http_port}"
            shard_metrics[spec.shard] = f"http://127.0.0.1:{wiring.metrics_port}/metrics"
            targets.append(("matching-engine", f"127.0.0.1:{wiring.metrics_port}", spec.labels))
            config = ShardConfig.from_env(env)  # with the overlay: EVENTS_MODE=inprocess starts no relay
            if config.relayed:
                relay = relay_spec(spec)
                port = wiring.relay_metrics_port
                waiting.append(self._start_app(relay, RelayConfig.for_shard(config, port).to_env(), logs, port))
                relays[spec.shard] = f"http://127.0.0.1:{port}"
                targets.append(("event-relay", f"127.0.0.1:{port}", relay.labels))
        for proc in waiting:  # ...then each is awaited (a relay is ready once its shard has opened the journal)
            proc.wait_ready(HttpProbe(self._apps[proc.name][1]), APP_READY_TIMEOUT_S)
        return shards, shard_metrics, relays, targets

    def _start_app(self, spec: ServiceSpec, env: dict[str, str], logs: Path, ready_port: int) -> ManagedProcess:
        proc = self._process(spec, env, logs)
        self._apps[spec.name] = (proc, f"http://127.0.0.1:{ready_port}{spec.ready_path}")
        return proc

    def _start_gateway(self, topology: Topology, shards: dict[str, str], logs: Path):
        spec = next(s for s in app_services(topology, self.shard_symbols) if s.role is Role.GATEWAY)
        http, metrics = free_port(), free_port()
        env = replace(spec.config(Wiring(http, metrics, shard_urls=shards)), workers=self.gateway_workers).to_env()
        proc = self._start_app(spec, env, logs, http)
        proc.wait_ready(HttpProbe(self._apps[spec.name][1]), APP_READY_TIMEOUT_S)
        url = f"http://127.0.0.1:{http}"
        return url, f"http://127.0.0.1:{metrics}/metrics", ("edge-gateway", f"127.0.0.1:{metrics}", spec.labels)

    def _start_grafana(self, run_dir: Path) -> str | None:
        binary = find_grafana()
        if binary is None:
            self.grafana_absent_reason = "no grafana or grafana-server binary on PATH"
            log.info("Grafana absent: %s (the report renders the dashboard's panels itself)", self.grafana_absent_reason)
            return None
        self.grafana = GrafanaServer(binary, free_port(), run_dir / "grafana", self.prometheus.url)
        self.grafana.process.registry = self.registry
        self._stack.callback(self.grafana.stop)
        self.grafana.start()
        return self.grafana.url

    # -- operations ----------------------------------------------------------

    def stop(self) -> None:
        self._stack.close()

    def pause_broker(self) -> None:
        self.broker.process.suspend()

    def resume_broker(self) -> None:
        self.broker.process.resume()

    def _app(self, name: str) -> tuple[ManagedProcess, str]:
        if name not in self._apps:
            raise ProcessError(f"no service named {name!r}; known: {sorted(self._apps)}")
        return self._apps[name]

    def load_driver(self):
        """With ``load_workers``, the driver that runs each load phase as that many processes (else None)."""
        from matchlab.loadgen.process_driver import process_driver

        return process_driver(self.load_workers, self.registry)

    def kill_service(self, name: str) -> None:
        self._app(name)[0].kill()

    def restart_service(self, name: str) -> None:
        """Stop (if running) and start again on the same ports; the journal or TSDB carries over."""
        if name == "prometheus" and self.prometheus is not None:
            self.prometheus.stop()
            self.prometheus.start()
            return
        proc, health = self._app(name)
        proc.stop()
        proc.start()
        proc.wait_ready(HttpProbe(health), APP_READY_TIMEOUT_S)

    def processes(self) -> dict[str, ManagedProcess]:
        procs = {name: p for name, (p, _) in self._apps.items()}
        for name, svc in (("broker", self.broker), ("prometheus", self.prometheus), ("grafana", self.grafana)):
            if svc is not None:
                procs[name] = svc.process
        return procs

    def service_records(self) -> list[ServiceRecord]:
        """Each running service, in start order, as a record another process can operate."""
        services = []
        if self.broker is not None:
            services.append((self.broker.process, self.broker.probe(), self.broker.bootstrap))
        for proc, health in self._apps.values():
            base = urlsplit(health)  # the readiness URL (/ready or /health) without its path: where users go
            services.append((proc, HttpProbe(health), f"{base.scheme}://{base.netloc}"))
        for svc in (self.prometheus, self.grafana):
            if svc is not None:
                services.append((svc.process, svc.probe(), svc.url))
        return [
            ServiceRecord(
                name=p.name, pid=p.pid, argv=p.argv, log=str(p.log_path), probe=probe_to_dict(probe),
                endpoint=endpoint, env=p.env, cwd=str(p.cwd) if p.cwd else None,
            )
            for p, probe, endpoint in services
            if p.running()
        ]

    def log_tails(self) -> dict[str, str]:
        return {name: p.log_tail() for name, p in self.processes().items()}

    def facts(self) -> dict[str, str]:
        facts = {"backend": "local (processes on 127.0.0.1)", "cold start": f"{self.cold_start_s:.1f} s"}
        if self.grafana is None:
            facts["grafana"] = f"absent ({self.grafana_absent_reason})"
        if self.shard_env.get("EVENTS_MODE") == EventsMode.INPROCESS.value:
            facts["events"] = "published by each shard's own producer, in the matching process (EVENTS_MODE=inprocess)"
        if self.gateway_workers > 1:
            facts["gateway"] = f"{self.gateway_workers} worker processes on one port (GATEWAY_WORKERS)"
        from matchlab.loadgen.process_driver import load_facts

        return {**facts, **load_facts(self.load_workers)}  # no credentials: facts go into results.json and reports
