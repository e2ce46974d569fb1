"""What `matchlab up` created on Kubernetes, and how to reach it again from another process.

``up`` writes ``<reports>/up-cluster.json`` the moment the backend is about to
create something (the k3d cluster, the namespaces), and again when the stack
is ready, so ``matchlab down`` deletes exactly that - also after an ``up``
killed half-way. It is the cluster's counterpart of ``up-pids.json``. The
other verbs rebuild the same backend the fixtures use from it
(``reattach``), so status, faults and teardown issue the fixtures' commands.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from matchlab.k8s.backend import CLUSTER, LOOPBACK, ExistingClusterBackend, K3dBackend, KubernetesBackend
from matchlab.k8s.commands import CommandRunner, SubprocessRunner
from matchlab.stack.recorded import ReattachedBackend
from matchlab.stack.state import StackRecord

LEDGER_FILE = "up-cluster.json"


@dataclass
class ClusterLedger:
    backend: str  # "k3d" or "k8s"
    kube_args: list[str] = field(default_factory=list)  # how kubectl reaches the cluster
    created_cluster: bool = False  # k3d: this `up` created the cluster (down deletes it)
    created_namespaces: list[str] = field(default_factory=list)  # only these are deleted
    context: str | None = None  # k8s
    image_registry: str | None = None  # k8s
    expose_on: str = LOOPBACK  # k3d
    gateway_replicas: int = 1  # a restarted gateway comes back with as many pods as `up` gave it

    @classmethod
    def of(cls, backend: KubernetesBackend) -> ClusterLedger:
        return cls(backend=backend.name, kube_args=list(backend.kube_args),
                   created_namespaces=list(backend.created_namespaces), gateway_replicas=backend.gateway_replicas,
                   **backend.cluster.ledger_fields())

    def merged(self, earlier: ClusterLedger | None) -> ClusterLedger:
        """What an earlier `up` of the same backend created stays created: a repeated `up` finds it existing."""
        if earlier is None or earlier.backend != self.backend:
            return self
        namespaces = list(dict.fromkeys(earlier.created_namespaces + self.created_namespaces))
        return ClusterLedger(**{**asdict(self), "created_cluster": self.created_cluster or earlier.created_cluster,
                                "created_namespaces": namespaces})

    def created(self) -> list[str]:
        """What `down` deletes, in its order (a created cluster last: the namespaces go with it anyway)."""
        return [f"namespace {ns}" for ns in reversed(self.created_namespaces)] + (
            [f"k3d cluster {CLUSTER}"] if self.created_cluster else [])


def ledger_path(reports_dir: Path) -> Path:
    return reports_dir / LEDGER_FILE


def read_ledger(reports_dir: Path) -> ClusterLedger | None:
    try:
        return ClusterLedger(**json.loads(ledger_path(reports_dir).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def write_ledger(reports_dir: Path, ledger: ClusterLedger) -> None:
    path = ledger_path(reports_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(ledger), indent=1))
    tmp.replace(path)  # a kill mid-write leaves the previous ledger, never half of one


def remove_ledger(reports_dir: Path) -> None:
    ledger_path(reports_dir).unlink(missing_ok=True)


def reattach(ledger: ClusterLedger, runner: CommandRunner) -> KubernetesBackend:
    """The backend `up` used, as it stood: same cluster, same kube args, same record of what it created."""
    backend: KubernetesBackend
    if ledger.backend == "k3d":
        backend = K3dBackend(runner=runner, expose_on=ledger.expose_on)
        backend.created_cluster = ledger.created_cluster
    else:
        backend = ExistingClusterBackend(ledger.context or "", ledger.image_registry or "", runner=runner)
    backend.kube_args = list(ledger.kube_args)
    backend.gateway_replicas = ledger.gateway_replicas
    backend.created_namespaces = list(ledger.created_namespaces)
    return backend


class RecordedCluster(ReattachedBackend):
    """A Kubernetes stack `matchlab up` left running, as a ``Backend`` (for ``pytest --reuse-stack`` and the verbs).

    Faults go through the reattached backend, so they issue the fixtures' own commands; ``stop()`` leaves the
    stack running (``matchlab down`` deletes what ``up`` created).
    """

    def __init__(self, record: StackRecord, ledger: ClusterLedger, runner: CommandRunner | None = None) -> None:
        self.record = record
        self.name = record.backend
        self.backend = reattach(ledger, runner or SubprocessRunner())

    def facts(self) -> dict[str, str]:
        return {**self.record.facts, "stack": f"reused ({self.name}, left running by matchlab up)"}
