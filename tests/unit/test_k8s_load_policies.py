"""NetworkPolicies admit the in-cluster load pods where their traffic goes, and nothing that merely looks alike.

The rendered policies are evaluated the way a policy-enforcing CNI does (a pod's ingress is allowed when
some policy selecting it has a rule whose port and peer match), for the labels the load Job really puts
on its pods.
"""

from __future__ import annotations

import pytest

from matchlab.k8s import manifests as m
from matchlab.k8s.load_job import ClusterLoad, load_job
from matchlab.loadgen.profile import LoadProfile
from matchlab.topology import APP_HTTP_PORT

NAME_LABEL = "kubernetes.io/metadata.name"  # every namespace carries its name as this label


def _matches(selector: dict, labels: dict[str, str]) -> bool:
    if set(selector) - {"matchLabels"}:
        raise AssertionError(f"this evaluator understands matchLabels only, got {selector}")
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _peer_admits(peer: dict, policy_ns: str, pod_ns: str, pod_labels: dict[str, str]) -> bool:
    if "ipBlock" in peer:
        return False  # node addresses (the harness' port mappings), never a pod's
    if "namespaceSelector" in peer:
        in_namespace = _matches(peer["namespaceSelector"], {NAME_LABEL: pod_ns})
    else:
        in_namespace = pod_ns == policy_ns  # a bare podSelector means the policy's own namespace
    return in_namespace and _matches(peer.get("podSelector", {}), pod_labels)


def admits(target_ns: str, target_labels: dict[str, str], port: int, pod_ns: str, pod_labels: dict[str, str]) -> bool:
    """Whether the rendered policies let a pod (``pod_ns``/``pod_labels``) reach ``port`` of the target pod."""
    selecting = [p for p in m.network_policies() if p["metadata"]["namespace"] == target_ns
                 and _matches(p["spec"]["podSelector"], target_labels)]
    assert selecting, "every pod is selected (default deny)"
    return any(any(p["port"] == port for p in rule["ports"])
               and any(_peer_admits(peer, target_ns, pod_ns, pod_labels) for peer in rule["from"])
               for policy in selecting for rule in policy["spec"]["ingress"])


def load_pod_labels() -> dict[str, str]:
    job = load_job(ClusterLoad("loadgen-x", LoadProfile.constant(10.0, 5.0), 2), 0.0, run_id="run-1")
    return job["spec"]["template"]["metadata"]["labels"]


APP = m.APP_NAMESPACE
TARGETS = {
    "gateway": (APP, m.GATEWAY_LABELS, APP_HTTP_PORT),
    "shard": (APP, {**m.SHARD_LABELS, "shard": "a"}, APP_HTTP_PORT),
    "prometheus remote write": (m.MONITORING_NAMESPACE, m.PROMETHEUS_SERVER_LABELS, m.PROMETHEUS_PORT),
}


@pytest.mark.parametrize("target", TARGETS)
def test_a_load_pod_reaches_the_gateway_the_shards_and_prometheus(target):
    ns, labels, port = TARGETS[target]
    assert admits(ns, labels, port, APP, load_pod_labels())


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("pod_ns, pod_labels", [
    (APP, {"app": "something-else"}),  # same namespace, not a load pod
    (APP, {}),
    ("default", {"app": "loadgen"}),  # the load label, but outside our namespace
])
def test_a_pod_without_the_load_label_or_elsewhere_is_refused(target, pod_ns, pod_labels):
    ns, labels, port = TARGETS[target]
    assert not admits(ns, labels, port, pod_ns, pod_labels)


def test_load_pods_reach_nothing_else():
    pod = load_pod_labels()
    assert not admits(APP, m.REDPANDA_LABELS, m.KAFKA_PORT, APP, pod)
    assert not admits(APP, {**m.SHARD_LABELS, "shard": "a"}, 9091, APP, pod)  # metrics: Prometheus only
    assert not admits(m.MONITORING_NAMESPACE, m.GRAFANA_LABELS, m.GRAFANA_PORT, APP, pod)


def test_the_evaluator_sees_the_existing_paths():
    """The evaluator itself can say yes and no: the gateway reaches the shards, a shard does not reach the gateway."""
    assert admits(APP, m.SHARD_LABELS, APP_HTTP_PORT, APP, m.GATEWAY_LABELS)
    assert not admits(APP, m.GATEWAY_LABELS, APP_HTTP_PORT, APP, m.SHARD_LABELS)
