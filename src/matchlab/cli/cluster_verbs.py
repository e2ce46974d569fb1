"""``up``, ``status``, ``down`` and the fault verbs on Kubernetes (``--backend k3d|k8s``).

The same backend classes as the pytest fixtures do the work. ``up`` records
what it creates in ``up-cluster.json`` as it goes (``k8s.ledger``) and the
endpoints in ``stack.json``; Prometheus has no host mapping, so ``up`` leaves
its ``kubectl port-forward`` running as the stack's one recorded process.
``status`` reads the cluster's own Deployments and StatefulSets; ``down``
stops that port-forward and deletes only what ``up`` created.
"""

from __future__ import annotations

import time
from pathlib import Path

from matchlab.backends import build_backend
from matchlab.errors import ProcessError
from matchlab.k8s.backend import KubernetesBackend
from matchlab.k8s.commands import CommandRunner, SubprocessRunner
from matchlab.k8s.ledger import (
    LEDGER_FILE,
    ClusterLedger,
    RecordedCluster,
    read_ledger,
    reattach,
    remove_ledger,
    write_ledger,
)
from matchlab.k8s.prereq import check_prerequisites
from matchlab.k8s.status import workload_states
from matchlab.settings import HarnessOptions
from matchlab.stack.pidfile import PidRegistry
from matchlab.stack.probes import HttpProbe
from matchlab.stack.spec import Endpoints, Topology
from matchlab.stack.stack import Stack
from matchlab.stack.state import UP_PID_FILE, ServiceRecord, StackRecord, probe_to_dict, write_state

PORT_FORWARD = "prometheus-port-forward"


def command_runner() -> CommandRunner:
    """What every kubectl, helm and k3d command goes through (tests put a recording runner here)."""
    return SubprocessRunner()


def up(opts: HarnessOptions, topology: Topology) -> tuple[Stack, StackRecord]:
    """Create (or reuse) the cluster and deploy; on failure, delete what this `up` created and forget it."""
    backend: KubernetesBackend = build_backend(opts, up=True, runner=command_runner())
    reports_dir = opts.reports_dir
    earlier = read_ledger(reports_dir)
    backend.on_create = lambda: write_ledger(reports_dir, ClusterLedger.of(backend).merged(earlier))
    run_dir = reports_dir / time.strftime("up-%Y%m%d-%H%M%S") / topology.value
    try:
        stack = Stack(backend, topology, run_dir).start()  # the backend deletes what it created if this fails
    except BaseException:
        if earlier is None:
            remove_ledger(reports_dir)
        else:
            write_ledger(reports_dir, earlier)
        raise
    ledger = ClusterLedger.of(backend).merged(earlier)
    write_ledger(reports_dir, ledger)
    services = []
    forward = backend.detach_prometheus()
    if forward is not None:  # it outlives `up`: recorded like the local stack's processes, stopped by `down`
        PidRegistry(reports_dir / UP_PID_FILE).add(forward.pid, forward.argv)
        probe = HttpProbe(f"{stack.endpoints.prometheus}/-/ready")
        services.append(ServiceRecord(PORT_FORWARD, forward.pid, forward.argv, str(forward.log_path),
                                      probe_to_dict(probe), stack.endpoints.prometheus, forward.env))
    facts = {**backend.facts(), "profile": opts.profile.value,
             "created by matchlab up": ", ".join(ledger.created()) or "nothing (all of it existed before)"}
    record = StackRecord(backend.name, topology, str(run_dir), stack.endpoints, services, facts)
    write_state(reports_dir, record)
    return stack, record


def recorded_ledger(reports_dir: Path) -> ClusterLedger:
    ledger = read_ledger(reports_dir)
    if ledger is None:
        raise ProcessError(f"no {reports_dir / LEDGER_FILE} says how to reach the cluster: "
                           "`matchlab down`, then `matchlab up --backend ...` again")
    return ledger


def recorded_cluster(record: StackRecord, reports_dir: Path) -> RecordedCluster:
    """The recorded Kubernetes stack, its faults issued through the fixtures' backend."""
    check_prerequisites(need_docker=False, tools=("kubectl",))
    return RecordedCluster(record, recorded_ledger(reports_dir), command_runner())


def endpoint_of(name: str, endpoints: Endpoints) -> str:
    if name.startswith("me-shard-"):
        return endpoints.shards.get(name.removeprefix("me-shard-"), "(not in this topology)")
    return {"broker": endpoints.broker, "edge-gateway": endpoints.gateway or "(not in this topology)",
            "prometheus": endpoints.prometheus, "grafana": endpoints.grafana or ""}.get(name, "")


def status_lines(record: StackRecord, reports_dir: Path) -> tuple[list[str], bool]:
    """One line per workload, its state as the cluster reports it; and whether all are healthy."""
    states = workload_states(recorded_cluster(record, reports_dir).backend)
    lines = [f"  {name:<13} {w.ref:<28} {state:<11} {endpoint_of(name, record.endpoints)}"
             for name, (w, state) in states.items()]
    return lines, all(state == "healthy" for _, state in states.values())


def tear_down(reports_dir: Path) -> list[str]:
    """Delete what `up` created (namespaces, the k3d cluster), nothing else; what was deleted or left."""
    ledger = read_ledger(reports_dir)
    if ledger is None:
        return []
    tools = ("k3d",) if ledger.created_cluster else ("kubectl",) if ledger.created_namespaces else ()
    if tools:
        check_prerequisites(need_docker=False, tools=tools)
    deleted = ledger.created()
    reattach(ledger, command_runner()).stop()
    remove_ledger(reports_dir)
    if not deleted:
        return [f"left the {ledger.backend} cluster as it was: `matchlab up` created nothing in it"]
    return [f"deleted {what}" for what in deleted]
