"""Deploying the stack onto a cluster: manifests, secrets, charts, and waiting until every workload is up.

Server-side apply, in order: the namespaces this run creates (only those are ever deleted), the Grafana
admin Secret and the services' admin-token Secret (generated per cluster, sent on stdin, never in argv,
logs or git), the NetworkPolicies (their node addresses read from the cluster), Redpanda, the topics
Job, shards, gateway (their images the run's content tags), dashboard ConfigMap; then ``helm upgrade
--install --wait`` Prometheus and Grafana with the generated values, and kubectl's watch-based
``rollout status`` / ``wait`` for every workload.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from matchlab.admin_auth import new_token
from matchlab.k8s import manifests as m
from matchlab.k8s.helm_values import GRAFANA_CHART, GRAFANA_SECRET, PROMETHEUS_CHART, dashboard_configmap
from matchlab.k8s.kube import HELM_TIMEOUT, WAIT_TIMEOUT, Kube
from matchlab.stack.spec import Topology, app_services

ROOT = Path(__file__).resolve().parents[3]


@dataclass
class Deployed:
    created_namespaces: list[str]
    admin_token: str


def existing_namespaces(kube: Kube) -> set[str]:
    out = kube.kubectl("get", "namespaces", "-o", "json", check=False)
    try:
        return {i["metadata"]["name"] for i in json.loads(out)["items"]}
    except (ValueError, KeyError):
        return set()


def node_sources(kube: Kube) -> tuple[str, ...]:
    """Node-owned addresses that port-mapped traffic arrives from (see manifests.K3D_NODE_SOURCES)."""
    out = kube.kubectl("get", "nodes", "-o", "json", check=False)
    try:
        nodes = json.loads(out)["items"]
    except (ValueError, KeyError):
        nodes = []  # plan, or no answer: k3d's defaults
    cidrs = [c for n in nodes for c in n.get("spec", {}).get("podCIDRs", [])]
    ips = [a["address"] for n in nodes for a in n.get("status", {}).get("addresses", []) if a["type"] == "InternalIP"]
    return m.node_sources(cidrs, ips) if cidrs or ips else m.K3D_NODE_SOURCES


def apply_grafana_secret(kube: Kube) -> None:
    found = kube.kubectl("get", "secret", GRAFANA_SECRET, "-n", m.MONITORING_NAMESPACE, "--ignore-not-found", "-o",
                         "name", check=False)
    if found.strip():
        return  # one password per cluster: never rotated under a running Grafana
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
              "metadata": {"name": GRAFANA_SECRET, "namespace": m.MONITORING_NAMESPACE},
              "stringData": {"admin-user": "admin", "admin-password": secrets.token_urlsafe(20)}}
    kube.apply([secret], m.MONITORING_NAMESPACE)


def apply_admin_secret(kube: Kube) -> str:
    """The services' admin token: the cluster's own if it has one, else a new one; returned, never printed."""
    found = kube.kubectl("get", "secret", m.ADMIN_SECRET, "-n", m.APP_NAMESPACE, "--ignore-not-found",
                         "-o", f"jsonpath={{.data.{m.ADMIN_SECRET_KEY}}}", check=False).strip()
    if found:  # one token per cluster: running pods hold it
        return base64.b64decode(found).decode()
    token = new_token()
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
              "metadata": {"name": m.ADMIN_SECRET, "namespace": m.APP_NAMESPACE},
              "stringData": {m.ADMIN_SECRET_KEY: token}}
    kube.apply([secret], m.APP_NAMESPACE)
    return token


def apply_stack(kube: Kube, *, registry: str, run_id: str, host: str, gateway_replicas: int,
                images: Mapping[str, str], on_create: Callable[[], None]) -> Deployed:
    """Every manifest, in order; the namespaces this run created and the stack's admin token."""
    existing = existing_namespaces(kube)
    docs = m.all_documents(registry, run_id, node_sources(kube), host, gateway_replicas, images)
    namespaces = docs.pop("00-namespaces.yaml")
    created = [d["metadata"]["name"] for d in namespaces if d["metadata"]["name"] not in existing]
    if created:
        on_create(created)
    kube.apply([d for d in namespaces if d["metadata"]["name"] in created], None)
    apply_grafana_secret(kube)
    token = apply_admin_secret(kube)
    for group in docs.values():
        for ns in dict.fromkeys(d["metadata"]["namespace"] for d in group):
            kube.apply([d for d in group if d["metadata"]["namespace"] == ns], ns)
    kube.apply([dashboard_configmap()], m.MONITORING_NAMESPACE)
    return Deployed(created, token)


def install_charts(kube: Kube) -> None:
    for repo, url, _, _ in (PROMETHEUS_CHART, GRAFANA_CHART):
        kube.runner.run(["helm", "repo", "add", "--force-update", repo, url])
    kube.runner.run(["helm", "repo", "update"])
    for release, (repo, _, chart, version), values in (
        ("prometheus", PROMETHEUS_CHART, "prometheus-values.yaml"),
        ("grafana", GRAFANA_CHART, "grafana-values.yaml"),
    ):
        kube.helm("upgrade", "--install", release, f"{repo}/{chart}", "--version", version,
                  "--namespace", m.MONITORING_NAMESPACE, "-f", str(ROOT / "k8s" / "helm" / values),
                  "--wait", "--timeout", HELM_TIMEOUT)


def wait_ready(kube: Kube) -> None:
    ns = ["-n", m.APP_NAMESPACE]
    kube.kubectl("rollout", "status", "statefulset/redpanda", *ns, f"--timeout={WAIT_TIMEOUT}")
    kube.kubectl("wait", "--for=condition=complete", "job/create-topics", *ns, f"--timeout={WAIT_TIMEOUT}")
    for spec in app_services(Topology.MULTI):
        kube.kubectl("rollout", "status", f"deployment/{spec.name}", *ns, f"--timeout={WAIT_TIMEOUT}")
