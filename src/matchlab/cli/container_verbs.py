"""``up``, ``status``, ``down`` and the fault verbs on the Docker engine (``--backend docker``).

The same ``DockerBackend`` as the pytest fixtures does the work. ``up`` enters every container, network
and volume in ``up-docker.json`` before creating it, and writes the endpoints to ``stack.json``; the
containers outlive ``up``. ``status`` reads the containers' own states and health; ``down`` collects
their logs into the run folder and removes only what the ledger lists.
"""

from __future__ import annotations

import time
from pathlib import Path

from matchlab.backends import build_backend
from matchlab.containers.backend import UP_LEDGER_FILE, DockerBackend
from matchlab.containers.ledger import ResourceLedger
from matchlab.containers.recorded import RecordedContainers
from matchlab.settings import HarnessOptions
from matchlab.stack.spec import Topology
from matchlab.stack.stack import Stack
from matchlab.stack.state import StackRecord, read_state, write_state


def up(opts: HarnessOptions, topology: Topology) -> tuple[Stack, StackRecord]:
    """Start the stack's containers; on failure the backend removes what this `up` created."""
    backend = build_backend(opts, up=True)
    run_dir = opts.reports_dir / time.strftime("up-%Y%m%d-%H%M%S") / topology.value
    stack = Stack(backend, topology, run_dir).start()
    facts = {**backend.facts(), "profile": opts.profile.value}
    record = StackRecord(backend.name, topology, str(run_dir), stack.endpoints, [], facts)
    write_state(opts.reports_dir, record)
    return stack, record


def states(record: StackRecord, reports_dir: Path) -> dict[str, str]:
    """Service name -> its container's state (healthy, paused, exited, unhealthy)."""
    return RecordedContainers(record, reports_dir).backend.states()


def status_lines(record: StackRecord, reports_dir: Path) -> tuple[list[str], bool]:
    found = states(record, reports_dir)
    endpoints = record.endpoints
    where = {"broker": endpoints.broker, "prometheus": endpoints.prometheus, "edge-gateway": endpoints.gateway or ""}
    where |= {f"me-shard-{s}": url for s, url in endpoints.shards.items()}
    lines = [f"  {name:<13} {'container':>7}  {state:<11} {where.get(name, '')}" for name, state in found.items()]
    if not found:
        lines = ["  no container of this stack is left (`matchlab down` clears the record)"]
    return lines, bool(found) and all(state == "healthy" for state in found.values())


def tear_down(reports_dir: Path) -> list[str]:
    """Collect the logs of `up`'s containers, remove them, the network and the volumes; what was removed."""
    if not ResourceLedger(reports_dir / UP_LEDGER_FILE).entries():
        return []
    record = read_state(reports_dir)
    run_dir = Path(record.run_dir) if record is not None and record.backend == "docker" else None
    backend = DockerBackend.attach(reports_dir, UP_LEDGER_FILE, run_dir)
    backend.collect_logs()
    return [f"removed {what}" for what in backend.remove_recorded()]
