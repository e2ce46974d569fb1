"""``up``, ``status``, ``down``, ``broker pause|resume``, ``kill``, ``restart``: the stack by hand.

``up`` starts the stack with the same backends the pytest fixtures use: on
the local backend every process runs in its own session, so it outlives this
command; on Kubernetes see ``cluster_verbs``. The record it writes
(``stack.json``) is how the other verbs find it.
"""

from __future__ import annotations

import argparse
import http.client
import signal
import threading
import time
from pathlib import Path

import psutil

from matchlab.backends import build_backend, recorded_backend
from matchlab.cli import cluster_verbs, container_verbs
from matchlab.errors import ProcessError, UsageError
from matchlab.settings import KUBERNETES, UP, HarnessOptions, settings_from, settings_problem
from matchlab.stack.backend import Backend
from matchlab.stack.pidfile import PidRegistry
from matchlab.stack.probes import PROBE_TIMEOUT_S
from matchlab.stack.recorded import RecordedStack
from matchlab.stack.spec import Endpoints, Topology
from matchlab.stack.stack import Stack
from matchlab.stack.state import (
    UP_PID_FILE,
    StackRecord,
    probe_from_dict,
    read_state,
    remove_state,
    state_path,
    write_state,
)


def recorded(reports_dir: Path) -> RecordedStack:
    record = read_state(reports_dir)
    if record is None:
        raise ProcessError(f"no stack is up (no {shown(state_path(reports_dir))}): start one with `matchlab up`")
    return RecordedStack(record, reports_dir)


def log_tails(reports_dir: Path) -> dict[str, str]:
    record = read_state(reports_dir)
    return RecordedStack(record, reports_dir).log_tails() if record is not None else {}


def shown(path: Path) -> Path:
    """Relative to the working directory when inside it: shorter, and what the user typed."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def endpoint_lines(endpoints: Endpoints, facts: dict[str, str]) -> list[str]:
    def metrics(url: str | None) -> str:
        return f"  (metrics {url})" if url else ""

    rows = []
    if endpoints.gateway:
        scale = f"  ({facts['gateway']})" if "gateway" in facts else ""  # more than one gateway process or pod
        rows.append(("gateway", f"{endpoints.gateway}{metrics(endpoints.gateway_metrics)}{scale}"))
    for shard, url in endpoints.shards.items():
        relay = f"  (relay {endpoints.relays[shard]}/metrics)" if shard in endpoints.relays else ""
        rows.append((f"shard {shard}", f"{url}{metrics(endpoints.shard_metrics.get(shard))}{relay}"))
    rows.append(("broker", endpoints.broker))
    rows.append(("prometheus", endpoints.prometheus))
    grafana = endpoints.grafana
    login = f"  (login {endpoints.grafana_auth[0]} / {endpoints.grafana_auth[1]})" if endpoints.grafana_auth else ""
    rows.append(("grafana", f"{grafana}{login}" if grafana else facts.get("grafana", "absent")))
    return [f"  {name:<11} {where}" for name, where in rows]


# -- up / status / down ---------------------------------------------------------


def up(args: argparse.Namespace) -> int:
    opts = settings_from(lambda option: getattr(args, option.dest), UP, reports_dir=args.reports_dir)
    problem = settings_problem(opts)
    if problem:
        raise UsageError(problem)
    topology = Topology(args.topology)
    existing = read_state(args.reports_dir)
    if existing is not None:
        if _already_up(existing, opts.backend, topology, args.reports_dir):
            return 0
        remove_state(args.reports_dir)  # nothing of it runs any more: a stale record
        print(f"forgot a stale record: no process of the {existing.topology.value} stack in it still runs")
    if opts.backend == "local":
        stack, record = _up_local(opts, topology)
    elif opts.backend == "docker":
        stack, record = container_verbs.up(opts, topology)
    else:
        stack, record = cluster_verbs.up(opts, topology)
    run_dir = Path(record.run_dir)
    where = "" if opts.backend == "local" else f" on {opts.backend}"
    print(f"{topology.value} stack up{where} in {stack.cold_start_s:.1f} s (logs: {shown(run_dir / 'logs')})")
    print("\n".join(endpoint_lines(stack.endpoints, record.facts)))
    print(f"endpoints written to {shown(state_path(args.reports_dir))}")
    if not args.foreground:
        return 0
    _wait_for_interrupt(args.reports_dir)
    down(args)
    return 0


def _up_local(opts: HarnessOptions, topology: Topology) -> tuple[Stack, StackRecord]:
    backend = build_backend(opts, up=True)
    run_dir = opts.reports_dir / time.strftime("up-%Y%m%d-%H%M%S") / topology.value
    stack = Stack(backend, topology, run_dir).start()
    facts = {**backend.facts(), "profile": opts.profile.value}
    record = StackRecord("local", topology, str(run_dir), stack.endpoints, backend.service_records(), facts)
    write_state(opts.reports_dir, record)
    return stack, record


def _running(record: StackRecord, reports_dir: Path) -> tuple[list[str], list[str]]:
    """(services running, services recorded): containers on docker, recorded processes elsewhere."""
    if record.backend == "docker":
        found = container_verbs.states(record, reports_dir)
        return [n for n, state in found.items() if not state.startswith(("exited", "dead", "created"))], list(found)
    return [s.name for s in record.alive()], [s.name for s in record.services]


def _already_up(record: StackRecord, backend: str, topology: Topology, reports_dir: Path) -> bool:
    """True when the recorded stack runs whole; raises when part of it runs; False when none does."""
    alive, recorded_names = _running(record, reports_dir)
    if not alive:
        return False
    if len(alive) < len(recorded_names):
        down = [name for name in recorded_names if name not in alive]
        raise ProcessError(
            f"the stack in {state_path(reports_dir)} is partly down ({', '.join(down)} not running): "
            f"`matchlab restart {down[0]}`, or `matchlab down` then `matchlab up`"
        )
    if (record.backend, record.topology) != (backend, topology):
        raise ProcessError(
            f"a {record.topology.value} stack on {record.backend} is already up: `matchlab down` first")
    print(f"already up: the {record.topology.value} stack of {record.run_dir}")
    print("\n".join(endpoint_lines(record.endpoints, record.facts)))
    return True


def _wait_for_interrupt(reports_dir: Path) -> None:
    """Block until Ctrl-C or SIGTERM (SIGINT handled explicitly: a background shell may have ignored it),
    or until `matchlab down` elsewhere removed the record."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    print("running in the foreground; Ctrl-C stops it", flush=True)
    try:
        while not stop.wait(1.0) and state_path(reports_dir).exists():
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def service_state(proc: psutil.Process | None, probe) -> str:
    if proc is None:
        return "not running"
    try:
        if proc.status() == psutil.STATUS_STOPPED:
            return "paused"
    except psutil.Error:
        return "not running"
    try:
        return "healthy" if probe.check() else "unhealthy"
    except (OSError, http.client.HTTPException) as exc:  # refused, timed out, an error status, garbled
        return f"unhealthy ({type(exc).__name__}, probe timeout {PROBE_TIMEOUT_S:g} s)"


def status(args: argparse.Namespace) -> int:
    stack = recorded(args.reports_dir)
    record = stack.record
    on_cluster = record.backend in KUBERNETES
    if record.backend == "local" and not record.alive():
        raise ProcessError(
            f"the stack recorded in {shown(state_path(args.reports_dir))} no longer runs (a stale record): "
            "`matchlab down` clears it, `matchlab up` starts a new one"
        )
    print(f"{record.topology.value} stack on {record.backend} (logs: {shown(Path(record.run_dir) / 'logs')})")
    healthy = True
    for svc in record.services:
        proc = svc.process()
        state = service_state(proc, probe_from_dict(svc.probe))
        healthy &= state == "healthy"
        pid = str(proc.pid) if proc else "-"
        print(f"  {svc.name:<13} {pid:>7}  {state:<11} {svc.endpoint}")
    if on_cluster or record.backend == "docker":  # the workloads or containers, as the engine reports them
        verbs = cluster_verbs if on_cluster else container_verbs
        lines, all_healthy = verbs.status_lines(record, args.reports_dir)
        print("\n".join(lines))
        healthy &= all_healthy
    grafana = record.facts.get("grafana")
    if grafana:
        print(f"  grafana: {grafana}")
    return 0 if healthy else 1


def down(args: argparse.Namespace) -> int:
    stopped: list[str] = []
    record = read_state(args.reports_dir)
    if record is not None:
        stopped = RecordedStack(record, args.reports_dir).tear_down()
        remove_state(args.reports_dir)
    # What an interrupted `up` started before it could write stack.json.
    reaped = PidRegistry(args.reports_dir / UP_PID_FILE).reap()
    for line in stopped:
        print(f"stopped {line}")
    for pid in reaped:
        print(f"reaped leftover PID {pid}")
    # What `up` created on Kubernetes or the Docker engine (also half-way through a killed `up`), and only that.
    deleted = cluster_verbs.tear_down(args.reports_dir) + container_verbs.tear_down(args.reports_dir)
    for line in deleted:
        print(line)
    if not stopped and not reaped and not deleted:
        print("nothing to tear down")
    return 0


# -- fault actions -------------------------------------------------------------


def _elsewhere(args: argparse.Namespace) -> tuple[Backend, str] | None:
    """The recorded stack and its backend's name when it runs on Kubernetes or the Docker engine (its faults go
    through that backend), else None: local processes are signalled by recorded PID."""
    record = recorded(args.reports_dir).record
    if record.backend == "local":
        return None
    if record.backend in KUBERNETES:
        return cluster_verbs.recorded_cluster(record, args.reports_dir), record.backend
    return recorded_backend(record, args.reports_dir), record.backend


# What each fault does where the stack runs elsewhere than in local processes.
DONE_ELSEWHERE = {
    ("pause", "docker"): "broker paused (docker pause: its topics stay in memory): shards keep accepting orders; "
                         "their events wait",
    ("pause", "k8s"): "broker paused (redpanda scaled to 0, its volume keeps the data): shards keep accepting "
                      "orders; their events wait",
    ("resume", "docker"): "broker resumed (docker unpause)",
    ("resume", "k8s"): "broker resumed (redpanda Ready)",
    ("kill", "docker"): "killed {service} (docker kill: SIGKILL; it stays down until `matchlab restart {service}`)",
    ("kill", "k8s"): "killed {service} (scaled to 0, its pods deleted at once)",
    ("restart", "docker"): "restarted {service} (the same container started again), ready",
    ("restart", "k8s"): "restarted {service}, ready",
}


def _say_done(action: str, backend: str, service: str = "") -> None:
    kind = "docker" if backend == "docker" else "k8s"
    print(DONE_ELSEWHERE[(action, kind)].format(service=service))


def broker(args: argparse.Namespace) -> int:
    elsewhere = _elsewhere(args)
    if elsewhere is not None:  # pausing twice is harmless on both
        backend, name = elsewhere
        (backend.pause_broker if args.action == "pause" else backend.resume_broker)()
        _say_done(args.action, name)
        return 0
    stack = recorded(args.reports_dir)
    proc = stack.running("broker")
    paused = proc.status() == psutil.STATUS_STOPPED
    if args.action == "pause":
        if paused:
            print(f"broker already paused (PID {proc.pid})")
        else:
            stack.pause_broker()
            print(f"broker paused (PID {proc.pid}): shards keep accepting orders; their events wait")
    elif not paused:
        print(f"broker already running (PID {proc.pid})")
    else:
        stack.resume_broker()
        print(f"broker resumed (PID {proc.pid})")
    return 0


def kill(args: argparse.Namespace) -> int:
    elsewhere = _elsewhere(args)
    if elsewhere is not None:
        backend, name = elsewhere
        backend.kill_service(args.service)
        _say_done("kill", name, args.service)
        return 0
    stack = recorded(args.reports_dir)
    proc = stack.service(args.service).process()
    if proc is None:
        print(f"{args.service} is not running")
        return 0
    stack.kill_service(args.service)
    print(f"killed {args.service} (PID {proc.pid})")
    return 0


def restart(args: argparse.Namespace) -> int:
    elsewhere = _elsewhere(args)
    if elsewhere is not None:
        backend, name = elsewhere
        backend.restart_service(args.service)
        _say_done("restart", name, args.service)
        return 0
    stack = recorded(args.reports_dir)
    pid = stack.restart_service(args.service)
    print(f"restarted {args.service} (PID {pid}), ready")
    return 0
