"""`matchlab up|status|down` and the fault verbs on k3d and an existing cluster, without a cluster.

No Docker engine or cluster here: the backends' commands go to a recording runner that answers as a
small cluster would, and the tests check which commands are issued, in which order, what is recorded,
and that `down` deletes only what `up` created. Prometheus' port-forward, the one process `up` leaves
running, is a real process (a tiny HTTP server standing in for `kubectl port-forward`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import psutil
import pytest

from matchlab.cli import cluster_verbs
from matchlab.cli.main import main
from matchlab.errors import CommandError
from matchlab.images.build import planned_tags
from matchlab.k8s import backend as backend_module
from matchlab.k8s import kube as kube_module
from matchlab.k8s import prereq, tools
from matchlab.k8s.backend import APP_IMAGES, CLUSTER, K3dBackend, KubernetesBackend
from matchlab.k8s.cluster import ExistingCluster
from matchlab.k8s.commands import RecordingRunner, Step
from matchlab.k8s.ledger import ClusterLedger, read_ledger, write_ledger
from matchlab.k8s.port_forward import PortForward
from matchlab.stack.probes import HttpProbe
from matchlab.stack.state import read_state

# What a build of this tree tags the images the cluster runs (content tags), as the nodes list them after the import.
IMAGES_ON_NODE = json.dumps({"images": [{"repoTags": [f"docker.io/{tag}" for tag in planned_tags(APP_IMAGES).values()]}]})
WORKLOADS = [("matching-engine", "StatefulSet", "redpanda"), *(("matching-engine", "Deployment", f"me-shard-{s}")
             for s in "abc"), ("matching-engine", "Deployment", "edge-gateway"),
             ("monitoring", "Deployment", "prometheus-server"), ("monitoring", "Deployment", "grafana")]


def workloads_json(namespace: str, ready: dict[str, int] | None = None, replicas: dict[str, int] | None = None) -> str:
    """`kubectl get deployments,statefulsets -o json` of one namespace: every workload 1/1 unless told otherwise."""
    ready, replicas = ready or {}, replicas or {}
    return json.dumps({"items": [
        {"kind": kind, "metadata": {"name": name}, "spec": {"replicas": replicas.get(name, 1)},
         "status": {"readyReplicas": ready.get(name, replicas.get(name, 1))}}
        for ns, kind, name in WORKLOADS if ns == namespace]})


class ClusterRunner(RecordingRunner):
    """Answers by command, whatever kubeconfig or context the command names first."""

    def run(self, argv: Sequence[str], check: bool = True, input_text: str | None = None) -> str:
        self.steps.append(Step(tuple(argv)))
        plain = list(argv)
        if plain[1:2] in (["--kubeconfig"], ["--context"], ["--kube-context"]):
            plain = plain[:1] + plain[3:]
        for prefix, answer in self.answers.items():
            if tuple(plain[: len(prefix)]) == prefix:
                return answer() if callable(answer) else answer
        return ""

    def commands_text(self) -> list[str]:
        return [" ".join(c) for c in self.commands()]

    def commands_since(self, step: int) -> list[tuple[str, ...]]:
        return [s.argv for s in self.steps[step:] if s.argv]


def index(commands: list[str], start: str) -> int:
    hits = [i for i, c in enumerate(commands) if c.startswith(start) or f" {start}" in c]
    assert hits, f"no command like {start!r}:\n" + "\n".join(commands)
    return hits[0]


@pytest.fixture
def cluster(monkeypatch, tmp_path: Path) -> ClusterRunner:
    """A recording runner for every command; prerequisites present; images built and a port-forward stand-in."""
    runner = ClusterRunner(answers={
        ("k3d", "cluster", "list"): "[]",
        ("docker", "exec"): IMAGES_ON_NODE,
        ("kubectl", "get", "namespaces"): '{"items": [{"metadata": {"name": "default"}}]}',
        ("kubectl", "get", "deployments,statefulsets", "-n", "matching-engine"): workloads_json("matching-engine"),
        ("kubectl", "get", "deployments,statefulsets", "-n", "monitoring"): workloads_json("monitoring"),
    })
    monkeypatch.setattr(cluster_verbs, "command_runner", lambda: runner)
    monkeypatch.setattr(backend_module, "check_prerequisites", lambda **_: None)
    monkeypatch.setattr(cluster_verbs, "check_prerequisites", lambda **_: None)
    monkeypatch.setattr(KubernetesBackend, "build_images", lambda self: self.runner.note("build images"))
    web = tmp_path / "web"
    (web / "-").mkdir(parents=True)
    (web / "-" / "ready").write_text("Prometheus Server is Ready.\n")

    def port_forward(self, run_dir: Path) -> None:
        """Stands in for `kubectl port-forward`: a real process, serving /-/ready on a loopback port."""
        forward = PortForward(self.kube, "monitoring", "svc/prometheus-server", 80, run_dir / "logs" / "pf.log")
        forward.argv = [sys.executable, "-m", "http.server", str(forward.port), "--bind", "127.0.0.1",
                        "--directory", str(web)]
        self._port_forward = forward
        self.prometheus_url = forward.open()

    monkeypatch.setattr(KubernetesBackend, "open_prometheus", port_forward)
    yield runner
    main(["down", "--reports-dir", str(tmp_path / "reports")])  # the port-forward, whatever a test left


def run(capsys, *argv: str, reports: Path) -> tuple[int, str, str]:
    code = main([*argv, "--reports-dir", str(reports)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_k3d_up_status_down_issue_the_fixtures_commands_and_delete_only_what_up_created(cluster, tmp_path, capsys):
    reports = tmp_path / "reports"
    code, out, err = run(capsys, "up", "--backend", "k3d", reports=reports)
    assert code == 0, err
    assert "multi stack up on k3d" in out and "gateway     http://127.0.0.1:8080\n" in out, out
    commands = cluster.commands_text()
    order = ["k3d cluster list", f"k3d cluster create {CLUSTER}", "k3d kubeconfig get", "k3d image import",
             "docker exec", "apply --server-side --field-manager=matchlab -f -", "helm repo add",
             "upgrade --install prometheus", "rollout status statefulset/redpanda",
             "rollout status deployment/edge-gateway"]
    positions = [index(commands, c) for c in order]
    assert positions == sorted(positions)
    assert not any("delete" in c for c in commands)  # nothing torn down after a successful `up`

    ledger = read_ledger(reports)
    assert ledger.backend == "k3d" and ledger.created_cluster
    assert ledger.created_namespaces == ["matching-engine", "monitoring"]
    assert ledger.kube_args[0] == "--kubeconfig" and Path(ledger.kube_args[1]).parent.name == "multi"
    record = read_state(reports)
    (forward,) = record.services
    assert record.backend == "k3d" and forward.name == "prometheus-port-forward" and forward.process() is not None
    assert record.endpoints.prometheus in out and record.endpoints.admin_token  # the cluster's token, kept
    assert record.facts["created by matchlab up"] == (
        f"namespace monitoring, namespace matching-engine, k3d cluster {CLUSTER}")

    # `status` reads the cluster's own objects; every workload Ready and the port-forward answering.
    code, out, err = run(capsys, "status", reports=reports)
    assert code == 0, out + err
    assert out.count(" healthy ") == 1 + len(WORKLOADS), out
    assert "deployment/me-shard-b" in out and "statefulset/redpanda" in out
    status_gets = [c for c in cluster.commands_text() if "get deployments,statefulsets" in c]
    assert len(status_gets) == 2 and all("--kubeconfig" in c for c in status_gets)

    # Again: already up, nothing issued to the cluster.
    before = len(cluster.steps)
    code, out, _ = run(capsys, "up", "--backend", "k3d", reports=reports)
    assert code == 0 and out.startswith("already up") and len(cluster.steps) == before

    pid = forward.pid
    code, out, err = run(capsys, "down", reports=reports)
    assert code == 0, err
    assert out.splitlines() == [f"stopped prometheus-port-forward (PID {pid})", "deleted namespace monitoring",
                                "deleted namespace matching-engine", f"deleted k3d cluster {CLUSTER}"]
    deletes = [c for c in cluster.commands_since(before) if "delete" in c]
    assert [d[-4:] if d[0] == "kubectl" else d for d in deletes] == [
        ("namespace", "monitoring", "--ignore-not-found", "--wait=false"),
        ("namespace", "matching-engine", "--ignore-not-found", "--wait=false"),
        ("k3d", "cluster", "delete", CLUSTER)]
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert read_state(reports) is None and read_ledger(reports) is None
    assert run(capsys, "down", reports=reports)[1].strip() == "nothing to tear down"


def test_status_names_a_workload_that_is_not_ready_and_a_paused_broker(cluster, tmp_path, capsys):
    reports = tmp_path / "reports"
    assert run(capsys, "up", "--backend", "k3d", "--topology", "single", reports=reports)[0] == 0
    cluster.answers[("kubectl", "get", "deployments,statefulsets", "-n", "matching-engine")] = workloads_json(
        "matching-engine", ready={"me-shard-a": 0}, replicas={"redpanda": 0})
    code, out, _ = run(capsys, "status", reports=reports)
    assert code == 1
    assert "statefulset/redpanda         paused" in out and "unhealthy (0/1 ready)" in out
    assert "(not in this topology)" in out  # the cluster runs shard b; a single stack does not use it


def test_fault_verbs_scale_the_clusters_workloads(cluster, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(kube_module, "POLL_S", 0.0)
    reports = tmp_path / "reports"
    assert run(capsys, "up", "--backend", "k3d", reports=reports)[0] == 0
    before = len(cluster.steps)
    assert run(capsys, "broker", "pause", reports=reports)[0] == 0
    assert run(capsys, "kill", "me-shard-b", reports=reports)[0] == 0
    commands = [" ".join(c) for c in cluster.commands_since(before)]
    assert [c.split(" ", 4)[4] for c in commands if " scale " in c] == [
        "statefulset/redpanda --replicas=0 -n matching-engine", "deployment/me-shard-b --replicas=0 -n matching-engine"]
    assert all(c.startswith("kubectl --kubeconfig ") for c in commands)


def test_a_failed_up_deletes_what_it_created_and_forgets_it(cluster, tmp_path, capsys):
    reports = tmp_path / "reports"
    seen: dict[str, ClusterLedger | None] = {}

    def helm_fails() -> str:
        seen["ledger"] = read_ledger(reports)  # what a `down` after a kill at this moment would find
        raise CommandError("`helm upgrade` exited with 1:\nError: timed out waiting for the condition")

    cluster.answers = {("helm", "upgrade"): helm_fails, **cluster.answers}
    code, _, err = run(capsys, "up", "--backend", "k3d", reports=reports)
    assert code == 1 and err.startswith("matchlab up: `helm upgrade` exited with 1") and "Traceback" not in err
    assert seen["ledger"].created_cluster and seen["ledger"].created_namespaces == ["matching-engine", "monitoring"]
    assert cluster.commands()[-1] == ("k3d", "cluster", "delete", CLUSTER)  # the backend's own clean-up
    assert read_ledger(reports) is None and read_state(reports) is None


def test_down_after_a_killed_up_deletes_what_its_ledger_lists(cluster, tmp_path, capsys):
    reports = tmp_path / "reports"
    write_ledger(reports, ClusterLedger("k3d", ["--kubeconfig", "/x/kubeconfig"], created_cluster=True))
    code, out, _ = run(capsys, "down", reports=reports)
    assert code == 0 and out.strip() == f"deleted k3d cluster {CLUSTER}"
    assert cluster.commands() == [("k3d", "cluster", "delete", CLUSTER)]


def test_existing_cluster_up_then_down_deletes_only_the_namespace_it_created(cluster, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ExistingCluster, "deliver_images", lambda self, kube, tags, plan: kube.runner.note("push images"))
    reports = tmp_path / "reports"
    cluster.answers[("kubectl", "get", "namespaces")] = '{"items": [{"metadata": {"name": "monitoring"}}]}'
    code, out, err = run(capsys, "up", "--backend", "k8s", "--kube-context", "lab", "--image-registry",
                         "registry.example:5000/team", reports=reports)
    assert code == 0, err
    assert not any(c.startswith("k3d") for c in cluster.commands_text())
    assert read_ledger(reports).created_namespaces == ["matching-engine"]
    before = len(cluster.steps)
    code, out, _ = run(capsys, "down", reports=reports)
    assert code == 0 and out.splitlines()[1:] == ["deleted namespace matching-engine"]
    assert [c for c in cluster.commands_since(before) if "delete" in c] == [
        ("kubectl", "--context", "lab", "delete", "namespace", "matching-engine", "--ignore-not-found", "--wait=false")]


def test_a_reused_k3d_cluster_is_left_as_it_was(cluster, tmp_path, capsys):
    reports = tmp_path / "reports"
    cluster.answers[("k3d", "cluster", "list")] = json.dumps([{"name": CLUSTER}])
    cluster.answers[("kubectl", "get", "namespaces")] = json.dumps(
        {"items": [{"metadata": {"name": ns}} for ns in ("matching-engine", "monitoring")]})
    assert run(capsys, "up", "--backend", "k3d", reports=reports)[0] == 0
    assert not any(c.startswith("k3d cluster create") for c in cluster.commands_text())
    before = len(cluster.steps)
    code, out, _ = run(capsys, "down", reports=reports)
    assert code == 0 and out.splitlines()[-1] == "left the k3d cluster as it was: `matchlab up` created nothing in it"
    assert not [c for c in cluster.commands_since(before) if "delete" in c]


@pytest.mark.parametrize("missing", ["docker engine", "k3d", "kubectl", "helm"])
def test_a_missing_prerequisite_is_one_line_saying_how_to_install_it(monkeypatch, tmp_path, capsys, missing):
    monkeypatch.setattr(prereq, "docker_engine_reachable",
                        lambda: f"no Docker engine answers; {prereq.INSTALL[missing]}" if missing == "docker engine"
                        else None)
    monkeypatch.setattr(prereq, "find_tool", lambda tool: None if tool == missing else f"/usr/bin/{tool}")
    reports = tmp_path / "reports"
    code, out, err = run(capsys, "up", "--backend", "k3d", reports=reports)
    assert code == 3 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"matchlab up: the Kubernetes backend needs the {missing}"
                                                   if missing == "docker engine" else
                                                   f"matchlab up: the Kubernetes backend needs {missing}: ")
    assert prereq.INSTALL[missing] in err
    assert not reports.exists() or not any(reports.iterdir())  # nothing created, nothing recorded


def test_the_prometheus_port_forward_finds_the_virtualenvs_kubectl_without_activation(monkeypatch, tmp_path):
    venv_bin, web = tmp_path / "venv-bin", tmp_path / "web"
    venv_bin.mkdir()
    (web / "-").mkdir(parents=True)
    (web / "-" / "ready").write_text("ok\n")
    kubectl = venv_bin / "kubectl"  # serves /-/ready on the local port it is asked to forward
    kubectl.write_text(f"""#!/bin/sh
for a in "$@"; do case "$a" in *:80) port="${{a%%:80}}";; esac; done
exec {sys.executable} -m http.server "$port" --bind 127.0.0.1 --directory {web}
""")
    kubectl.chmod(0o755)
    monkeypatch.setattr(tools, "venv_bin", lambda: venv_bin)
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))  # not activated, no kubectl on PATH
    backend = K3dBackend(runner=RecordingRunner())
    try:
        backend.open_prometheus(tmp_path / "run")
        assert HttpProbe(f"{backend.prometheus_url}/-/ready").check()
    finally:
        backend.close_prometheus()


def test_pytest_reuse_stack_takes_a_recorded_cluster_stack_and_faults_go_to_the_cluster(monkeypatch, tmp_path):
    from matchlab.harness.options import HarnessOptions, Profile
    from matchlab.harness.stack import StackPool
    from matchlab.k8s import ledger as ledger_module
    from matchlab.stack.spec import Endpoints, Topology
    from matchlab.stack.state import ServiceRecord, StackRecord, write_state

    runner = RecordingRunner(answers={("kubectl", "--kubeconfig", "/k", "get", "pods"): ""})
    monkeypatch.setattr(ledger_module, "SubprocessRunner", lambda: runner)
    reports = tmp_path / "reports"
    me = psutil.Process()  # a live process with a known command line stands in for the port-forward
    forward = ServiceRecord("prometheus-port-forward", me.pid, me.cmdline(), "log", {"http": "http://127.0.0.1:1/"},
                            "http://127.0.0.1:1")
    endpoints = Endpoints(shards={s: f"http://127.0.0.1:3008{i}" for i, s in enumerate("abc")}, shard_metrics={},
                          gateway="http://127.0.0.1:8080", gateway_metrics=None, prometheus="http://127.0.0.1:1",
                          broker="127.0.0.1:9094")
    write_state(reports, StackRecord("k3d", Topology.MULTI, str(tmp_path), endpoints, [forward]))
    opts = HarnessOptions("k3d", Profile.QUICK, False, reports, None, None, False, reuse_stack=True)
    pool = StackPool(opts, tmp_path / "run")

    assert pool._reuse(Topology.MULTI) is None  # no ledger: how to reach the cluster is unknown
    assert "up-cluster.json" in pool.reused["multi"]
    write_ledger(reports, ClusterLedger("k3d", ["--kubeconfig", "/k"]))
    stack = pool._reuse(Topology.MULTI)
    assert stack.endpoints == endpoints and pool.reused["multi"].startswith("reused")
    stack.backend.pause_broker()
    assert runner.commands()[0] == ("kubectl", "--kubeconfig", "/k", "scale", "statefulset/redpanda", "--replicas=0",
                                    "-n", "matching-engine")
    stack.stop()  # left running: nothing deleted
    assert not [c for c in runner.commands() if "delete" in c]


def test_gateway_workers_become_replicas_that_a_later_restart_keeps(cluster, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(kube_module, "POLL_S", 0.0)
    reports = tmp_path / "reports"
    code, out, _ = run(capsys, "up", "--backend", "k3d", "--gateway-workers", "2", reports=reports)
    assert code == 0, out
    assert "2 replicas of the edge-gateway Deployment" in out
    assert read_ledger(reports).gateway_replicas == 2
    before = len(cluster.steps)
    assert run(capsys, "restart", "edge-gateway", reports=reports)[0] == 0  # another process: the ledger's count
    scaled = [c[-3] for c in cluster.commands_since(before) if "scale" in c]
    assert scaled == ["--replicas=0", "--replicas=2"]
