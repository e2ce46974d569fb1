"""What the Kubernetes path exposes, verified without a cluster: port bindings, policies, secrets, Prometheus."""

from __future__ import annotations

import base64
import logging
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from matchlab.errors import UsageError
from matchlab.k8s import deploy
from matchlab.k8s import manifests as m
from matchlab.k8s.backend import CLUSTER, ExistingClusterBackend, K3dBackend
from matchlab.k8s.commands import RecordingRunner
from matchlab.k8s.helm_values import prometheus_values
from matchlab.stack.spec import Topology

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSIONS = ("1.28.0", "1.33.0")


def create_command(backend: K3dBackend, tmp: Path) -> list[str]:
    backend.start(Topology.MULTI, tmp / "run" / "multi")
    create = next(c for c in backend.runner.commands() if c[:3] == ("k3d", "cluster", "create"))
    return list(create)


def mappings(create: list[str]) -> list[str]:
    return [create[i + 1] for i, a in enumerate(create) if a == "-p"]


def test_k3d_binds_every_mapping_to_loopback_by_default(tmp_path):
    backend = K3dBackend(plan=True)
    create = create_command(backend, tmp_path)
    ports = mappings(create)
    assert len(ports) == len(m.HOST_PORTS) == len(m.NODE_PORTS)
    for mapping in ports:
        assert re.fullmatch(r"127\.0\.0\.1:\d+:3\d{4}@loadbalancer", mapping), mapping
    assert not any(p.split(":")[1] == "9090" for p in ports)  # Prometheus is not mapped at all
    assert create[create.index("--api-port") + 1] == "127.0.0.1:random"  # nor is the Kubernetes API beyond loopback
    ep = backend.endpoints(Topology.MULTI)
    assert ep.gateway == "http://127.0.0.1:8080" and ep.grafana == "http://127.0.0.1:3000"
    assert ep.prometheus.startswith("http://127.0.0.1:")  # the port-forward
    plan_text = "\n".join(str(s) for s in backend.runner.steps)
    assert "port mappings bind 127.0.0.1 only" in plan_text


@pytest.mark.parametrize(("address", "connect"), [("192.168.7.20", "192.168.7.20"), ("0.0.0.0", "127.0.0.1"),
                                                   ("::1", "[::1]")])
def test_expose_on_changes_every_mapping_and_warns(tmp_path, caplog, address, connect):
    with caplog.at_level(logging.WARNING, logger="matchlab.k8s.backend"):
        backend = K3dBackend(plan=True, expose_on=address)
    ports = mappings(create_command(backend, tmp_path))
    bound = f"[{address}]" if ":" in address else address
    assert ports and all(p.startswith(f"{bound}:") for p in ports), ports
    assert backend.endpoints(Topology.MULTI).gateway == f"http://{connect}:8080"
    warned = [r.getMessage() for r in caplog.records if "--expose-on" in r.getMessage()]
    assert bool(warned) == (address != "::1"), warned  # loopback needs no warning


def test_expose_on_rejects_what_is_not_an_address():
    with pytest.raises(UsageError, match="--expose-on wants an IP address"):
        K3dBackend(plan=True, expose_on="my-laptop")


@pytest.mark.parametrize(("bound", "refused"), [("0.0.0.0", True), ("127.0.0.1", False)])
def test_a_reused_cluster_bound_elsewhere_is_refused(tmp_path, bound, refused):
    runner = RecordingRunner(answers={
        ("k3d", "cluster", "list"): f'[{{"name": "{CLUSTER}"}}]',
        ("docker", "port"): f"6443/tcp -> 127.0.0.1:41234\n30080/tcp -> {bound}:8080\n30300/tcp -> {bound}:3000\n",
    })
    backend = K3dBackend(runner=runner, plan=True)
    if refused:
        with pytest.raises(UsageError, match="maps its ports on 0.0.0.0, not 127.0.0.1"):
            backend.start(Topology.MULTI, tmp_path / "run" / "multi")
    else:
        backend.start(Topology.MULTI, tmp_path / "run" / "multi")
    assert not any(c[:3] == ("k3d", "cluster", "create") for c in runner.commands())


# -- NetworkPolicies ------------------------------------------------------------------------


def policies() -> dict[tuple[str, str], dict]:
    return {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in m.network_policies()}


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_network_policies_validate_and_are_committed(version):
    committed = list(yaml.safe_load_all((ROOT / "k8s" / "05-network-policies.yaml").read_text()))
    assert committed == m.network_policies()
    for doc in committed:
        kubernetes_validate.validate(doc, version, strict=True)


def peers(policy: dict, port: int) -> list[dict]:
    return [peer for rule in policy["spec"]["ingress"] if any(p["port"] == port for p in rule["ports"])
            for peer in rule["from"]]


def test_both_namespaces_deny_ingress_by_default():
    for ns in (m.APP_NAMESPACE, m.MONITORING_NAMESPACE):
        deny = policies()[(ns, "default-deny-ingress")]["spec"]
        assert deny == {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": []}


def test_shards_accept_only_the_gateway_the_load_pods_prometheus_and_the_port_mappings():
    shards = policies()[(m.APP_NAMESPACE, "me-shards")]
    assert shards["spec"]["podSelector"] == {"matchLabels": m.SHARD_LABELS}
    http = peers(shards, 8080)
    assert {"podSelector": {"matchLabels": m.GATEWAY_LABELS}} in http
    assert all("ipBlock" in p or p["podSelector"]["matchLabels"] in (m.GATEWAY_LABELS, m.LOADGEN_LABELS) for p in http)
    metrics = peers(shards, 9091)
    assert {"podSelector": {"matchLabels": m.PROMETHEUS_SERVER_LABELS},
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}} in metrics
    assert all("ipBlock" in p or p["podSelector"]["matchLabels"] == m.PROMETHEUS_SERVER_LABELS for p in metrics)


def test_redpanda_accepts_only_the_shards_and_the_topics_job_in_cluster():
    redpanda = policies()[(m.APP_NAMESPACE, "redpanda")]
    assert [p["podSelector"]["matchLabels"] for p in peers(redpanda, 9092)] == [m.SHARD_LABELS, m.TOPICS_JOB_LABELS]
    assert all("ipBlock" in p for p in peers(redpanda, m.KAFKA_EXTERNAL_PORT))  # the harness' reader only
    job = m.topics_job()["spec"]["template"]["metadata"]["labels"]
    assert job == m.TOPICS_JOB_LABELS


def test_prometheus_accepts_only_grafana_and_the_load_pods_so_remote_write_is_cluster_only():
    prom = policies()[(m.MONITORING_NAMESPACE, "prometheus-server")]
    assert peers(prom, 9090) == [{"podSelector": {"matchLabels": m.GRAFANA_LABELS}},
                                 {"podSelector": {"matchLabels": m.LOADGEN_LABELS},
                                  "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": m.APP_NAMESPACE}}}]
    assert "prometheus" not in m.NODE_PORTS and "prometheus" not in m.HOST_PORTS
    assert prometheus_values()["server"]["service"] == {"type": "ClusterIP", "servicePort": 80}


def test_port_mapping_sources_are_node_addresses_never_a_pod_range():
    blocks = [p["ipBlock"]["cidr"] for pol in m.network_policies() for rule in pol["spec"]["ingress"]
              for p in rule["from"] if "ipBlock" in p]
    assert blocks and all(int(b.split("/")[1]) >= 31 for b in blocks), blocks
    assert m.node_sources(["10.42.5.0/24", "fd00:42:5::/64"], ["172.18.0.3"]) == (
        "10.42.5.0/31", "fd00:42:5::/127", "172.18.0.3/32")


def test_policies_are_applied_before_the_workloads_with_the_cluster_s_node_addresses(tmp_path):
    nodes = ('{"items": [{"spec": {"podCIDRs": ["10.42.7.0/24"]}, '
             '"status": {"addresses": [{"type": "InternalIP", "address": "172.20.0.4"}]}}]}')
    runner = RecordingRunner()
    backend = K3dBackend(runner=runner, plan=True)
    backend.kube.kubectl = _answering(backend.kube.kubectl, {("get", "nodes"): nodes})
    backend.start(Topology.MULTI, tmp_path / "run" / "multi")
    steps = [str(s) for s in runner.steps]
    first_policy = next(i for i, s in enumerate(steps) if "NetworkPolicy/default-deny-ingress" in s)
    first_workload = next(i for i, s in enumerate(steps) if "StatefulSet/redpanda" in s)
    assert first_policy < first_workload
    assert any("apply in monitoring: NetworkPolicy/default-deny-ingress" in s for s in steps)
    assert m.node_sources(["10.42.7.0/24"], ["172.20.0.4"]) == deploy.node_sources(backend.kube)


def _answering(kubectl, answers: dict[tuple[str, ...], str]):
    def call(*args: str, **kw):
        kubectl(*args, **kw)
        for prefix, answer in answers.items():
            if args[: len(prefix)] == prefix:
                return answer
        return ""

    return call


# -- the admin token on Kubernetes --------------------------------------------------------------


def test_admin_token_secret_is_generated_once_sent_on_stdin_and_never_in_a_step(tmp_path):
    runner = RecordingRunner()
    applied: list[str] = []
    backend = K3dBackend(runner=runner, plan=True)
    original = runner.run

    def run(argv, check=True, input_text=None):
        if input_text:
            applied.append(input_text)
        return original(argv, check, input_text)

    runner.run = run
    backend.start(Topology.MULTI, tmp_path / "run" / "multi")
    token = backend.endpoints(Topology.MULTI).admin_token
    assert len(token) >= 32
    assert any(f"Secret/{m.ADMIN_SECRET}" in str(s) for s in runner.steps)
    assert any(token in text for text in applied)  # on stdin...
    assert not any(token in str(s) for s in runner.steps)  # ...never in argv or a plan line
    assert token not in repr(backend.endpoints(Topology.MULTI))


def test_an_existing_admin_secret_is_reused_not_rotated(tmp_path):
    existing = "x" * 43
    runner = RecordingRunner(answers={
        ("kubectl", "--context", "c", "get", "secret", m.ADMIN_SECRET): base64.b64encode(existing.encode()).decode()})
    backend = ExistingClusterBackend("c", "r", runner=runner, plan=True)
    backend.start(Topology.MULTI, tmp_path / "run" / "multi")
    assert backend.endpoints(Topology.MULTI).admin_token == existing
    assert not any(f"Secret/{m.ADMIN_SECRET}" in str(s) for s in runner.steps)


def test_no_token_or_password_literal_in_the_repository_k8s_files():
    for path in (ROOT / "k8s").rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            assert (doc or {}).get("kind") != "Secret", path
    text = "\n".join(p.read_text() for p in (ROOT / "k8s").rglob("*.yaml"))
    assert "secretKeyRef" in text and "name: ADMIN_TOKEN\n" in text
