"""A running stack written down, so that another process can find, operate and stop it.

``matchlab up`` writes ``<reports>/stack.json`` (mode 0600: it holds the stack's admin token) after the stack is ready:
topology, backend, run folder, endpoints, and per service its PID, command
line, environment, log and readiness probe. ``status``, ``down``, the fault
verbs and ``pytest --reuse-stack`` read it. A recorded PID counts as the
service only while its command line still matches (PIDs get recycled).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from matchlab.stack.probes import HttpProbe, PortProbe, Probe
from matchlab.stack.spec import Endpoints, Topology

STATE_FILE = "stack.json"
# `up` records its PIDs apart from the test runs' registry (stack-pids.json): a test run reaps only
# its own leftovers, never a stack left running on purpose, and `down` only what `up` started.
UP_PID_FILE = "up-pids.json"


def probe_to_dict(probe: Probe) -> dict:
    if isinstance(probe, HttpProbe):
        return {"http": probe.url}
    if isinstance(probe, PortProbe):
        return {"tcp": f"{probe.host}:{probe.port}"}
    raise TypeError(f"cannot record probe {probe!r}")


def probe_from_dict(doc: dict) -> Probe:
    if "http" in doc:
        return HttpProbe(doc["http"])
    host, port = doc["tcp"].rsplit(":", 1)
    return PortProbe(host, int(port))


@dataclass
class ServiceRecord:
    """How to find, check, signal and start again one service of a recorded stack."""

    name: str
    pid: int
    argv: list[str]
    log: str
    probe: dict
    endpoint: str  # where a user reaches it: a URL, or the broker's bootstrap address
    env: dict[str, str] = field(default_factory=dict)  # on top of the environment
    cwd: str | None = None

    def process(self) -> psutil.Process | None:
        """The live process, only if the PID still runs this service's command line."""
        try:
            proc = psutil.Process(self.pid)
            if proc.cmdline() == self.argv and proc.status() != psutil.STATUS_ZOMBIE:
                return proc
        except psutil.Error:
            pass
        return None


@dataclass
class StackRecord:
    backend: str
    topology: Topology
    run_dir: str
    endpoints: Endpoints
    services: list[ServiceRecord]
    facts: dict[str, str] = field(default_factory=dict)

    def service(self, name: str) -> ServiceRecord | None:
        return next((s for s in self.services if s.name == name), None)

    def alive(self) -> list[ServiceRecord]:
        return [s for s in self.services if s.process() is not None]

    def to_dict(self) -> dict:
        doc = asdict(self)
        doc["topology"] = self.topology.value
        return doc

    @classmethod
    def from_dict(cls, doc: dict) -> StackRecord:
        return cls(
            backend=doc["backend"],
            topology=Topology(doc["topology"]),
            run_dir=doc["run_dir"],
            endpoints=Endpoints(**{**doc["endpoints"], "grafana_auth": _pair(doc["endpoints"].get("grafana_auth"))}),
            services=[ServiceRecord(**s) for s in doc["services"]],
            facts=doc.get("facts", {}),
        )


def _pair(value) -> tuple[str, str] | None:
    return tuple(value) if value else None


def state_path(reports_dir: Path) -> Path:
    return reports_dir / STATE_FILE


def read_state(reports_dir: Path) -> StackRecord | None:
    """The recorded stack, or None when there is no readable record."""
    try:
        return StackRecord.from_dict(json.loads(state_path(reports_dir).read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_state(reports_dir: Path, record: StackRecord) -> Path:
    path = state_path(reports_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    # It holds the stack's admin token (services restart with it): readable by its owner only, like a kubeconfig.
    tmp.touch(mode=0o600)
    tmp.chmod(0o600)
    tmp.write_text(json.dumps(record.to_dict(), indent=1))
    tmp.replace(path)  # readers never see half a file
    return path


def remove_state(reports_dir: Path) -> None:
    state_path(reports_dir).unlink(missing_ok=True)
