"""The state of every workload of the stack, read from the cluster's own objects (for `matchlab status`)."""

from __future__ import annotations

import json

from matchlab.k8s.backend import KubernetesBackend
from matchlab.k8s.faults import BROKER, Workload, workload_of
from matchlab.stack.spec import Topology, app_services


def stack_workloads() -> dict[str, Workload]:
    """Service name -> workload, in start order: broker, shards, gateway, then the charts' Prometheus and Grafana."""
    names = [spec.name for spec in app_services(Topology.MULTI)] + ["prometheus", "grafana"]
    return {"broker": BROKER, **{name: workload_of(name) for name in names}}


def workload_state(obj: dict | None, paused_word: str = "scaled to 0") -> str:
    """healthy (every replica Ready), scaled to 0, not found, or unhealthy with the ready count."""
    if obj is None:
        return "not found"
    wanted = obj.get("spec", {}).get("replicas", 1)
    ready = obj.get("status", {}).get("readyReplicas", 0) or 0
    if wanted == 0:
        return paused_word
    return "healthy" if ready >= wanted else f"unhealthy ({ready}/{wanted} ready)"


def workload_states(backend: KubernetesBackend) -> dict[str, tuple[Workload, str]]:
    """Service name -> (workload, state), from one `kubectl get deployments,statefulsets` per namespace."""
    workloads = stack_workloads()
    found: dict[tuple[str, str], dict] = {}
    for ns in dict.fromkeys(w.namespace for w in workloads.values()):
        out = backend.kubectl("get", "deployments,statefulsets", "-n", ns, "-o", "json", check=False)
        try:
            items = json.loads(out)["items"] if out.strip() else []
        except (ValueError, KeyError):
            items = []
        for item in items:
            found[(ns, f"{item['kind'].lower()}/{item['metadata']['name']}")] = item
    return {
        name: (w, workload_state(found.get((w.namespace, w.ref)), "paused" if w is BROKER else "scaled to 0"))
        for name, w in workloads.items()
    }

