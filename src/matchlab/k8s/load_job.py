"""Load generated inside the cluster: an Indexed Job whose pods each run one segment of the schedule.

Like the k6-operator's parallel runners: ``N`` pods (by default one per agent node, spread across
nodes) run ``python -m matchlab.loadgen`` with the same profile and seed, pod ``i`` taking segment
``i/N`` (``JOB_COMPLETION_INDEX``), all starting at one wall-clock instant. They reach the gateway or
the shards through cluster Services (not the node ports the host uses), remote-write their client
metrics to Prometheus with a ``worker`` label, and print their measurements as ``MATCHLAB-RESULT``
log lines, which the harness reads back with ``kubectl logs`` and merges into one result
(``matchlab.loadgen.segments``). ``backoffLimit: 0``: a retried pod would send its share twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from matchlab.images.targets import LOADGEN_IMAGE
from matchlab.k8s.helm_values import PROMETHEUS_URL
from matchlab.k8s.manifests import APP_NAMESPACE, LOADGEN_LABELS, RUN_LABEL
from matchlab.loadgen.driver import FlowSpec
from matchlab.loadgen.profile import LoadProfile
from matchlab.loadgen.workers import COMPLETION_GRACE_S, worker_args
from matchlab.topology import APP_HTTP_PORT, SHARD_IDS

# Per worker: the generator's own measured cost is well under a core at the ASR rates (benchmarks/bench_loadgen.py).
LOADGEN_RESOURCES = {"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"  # the Indexed Job's per-pod annotation and label
START_LEAD_S = 30  # pods scheduled and interpreters started before the common start time


def service_url(name: str) -> str:
    return f"http://{name}.{APP_NAMESPACE}.svc.cluster.local:{APP_HTTP_PORT}"


@dataclass(frozen=True)
class ClusterLoad:
    """One load phase to run in the cluster: what the host's runner would run, plus how many workers."""

    name: str  # the Job's name (DNS-1123 label)
    profile: LoadProfile
    workers: int
    shards: tuple[str, ...] = SHARD_IDS
    via_gateway: bool = True
    seed: int = 1
    mix: str = "stationary"
    hot_symbol: str | None = None  # with mix "hot": the symbol taking most orders
    labels: dict[str, str] = field(default_factory=dict)  # on the remote-written client metrics

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"in-cluster load needs at least one worker, got {self.workers}")

    @property
    def timeout_s(self) -> int:
        return int(START_LEAD_S + self.profile.duration_s + COMPLETION_GRACE_S)


def loadgen_args(load: ClusterLoad, start_at: float) -> list[str]:
    """The generator's command line in every pod; the kubelet expands ``$(WORKER_INDEX)`` from the pod's env."""
    route = FlowSpec(tuple(load.shards), load.via_gateway, load.seed).route_args(
        service_url("edge-gateway"), {s: service_url(f"me-shard-{s}") for s in load.shards})
    return worker_args(route, load.profile, load.workers, "$(WORKER_INDEX)", start_at, seed=load.seed, mix=load.mix,
                       remote_write=f"{PROMETHEUS_URL}/api/v1/write", labels=load.labels,
                       extra=["--hot-symbol", load.hot_symbol] if load.hot_symbol else [])


def load_job(load: ClusterLoad, start_at: float, registry: str = "", run_id: str | None = None,
             image: str | None = None) -> dict:
    """``image``: the run's built load-generator tag (default: the version tag)."""
    image = image or LOADGEN_IMAGE
    pod_labels = {**LOADGEN_LABELS, "matchlab.load": load.name}  # the NetworkPolicies admit LOADGEN_LABELS
    labels = {**pod_labels, **({RUN_LABEL: run_id} if run_id else {})}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": load.name, "namespace": APP_NAMESPACE, "labels": labels},
        "spec": {
            "completionMode": "Indexed",
            "completions": load.workers,
            "parallelism": load.workers,
            "backoffLimit": 0,
            "activeDeadlineSeconds": load.timeout_s,
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "restartPolicy": "Never",
                    # One worker per node where there is room: the load's own CPU is spread like k6-operator runners.
                    "topologySpreadConstraints": [{
                        "maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
                        "labelSelector": {"matchLabels": pod_labels},
                    }],
                    "containers": [{
                        "name": "loadgen",
                        "image": f"{registry.rstrip('/')}/{image}" if registry else image,
                        "imagePullPolicy": "IfNotPresent" if registry else "Never",
                        "args": loadgen_args(load, start_at),
                        "env": [{"name": "WORKER_INDEX", "valueFrom": {"fieldRef": {
                            "fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}}],
                        "resources": LOADGEN_RESOURCES,
                        "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False},
                    }],
                },
            },
        },
    }
