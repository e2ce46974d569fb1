"""The Kubernetes path, verified without a cluster: schemas, one source of truth, values, commands and order."""

from __future__ import annotations

import ast
import copy
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from matchlab.errors import ConfigError, WaitTimeoutError
from matchlab.k8s import kube as kube_module
from matchlab.k8s import manifests as m
from matchlab.k8s.backend import CLUSTER, ExistingClusterBackend, K3dBackend, KubernetesBackend
from matchlab.k8s.commands import RecordingRunner
from matchlab.k8s.helm_values import grafana_values
from matchlab.stack.backend import Backend
from matchlab.stack.local import LocalBackend
from matchlab.stack.spec import Topology, app_services

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSIONS = ("1.28.0", "1.33.0")


def all_docs() -> list[dict]:
    docs = [d for group in m.all_documents().values() for d in group]
    from matchlab.k8s.helm_values import dashboard_configmap

    return docs + [dashboard_configmap()]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schemas(version):
    for doc in all_docs():
        kubernetes_validate.validate(doc, version, strict=True)
    committed = [d for f in sorted((ROOT / "k8s").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text())]
    assert len(committed) == len(all_docs())
    for doc in committed:
        kubernetes_validate.validate(doc, version, strict=True)


def test_committed_files_are_generated_and_current():
    for name, text in m.rendered_files().items():
        assert (ROOT / "k8s" / name).read_text() == text, f"k8s/{name} is stale: python -m matchlab.k8s.manifests"


def _deployments() -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in m.app_objects() if d["kind"] == "Deployment"}


def test_shard_deployments_differ_only_in_shard_id_and_symbols():
    deps = _deployments()

    def normalized(doc: dict, shard: str) -> str:
        text = yaml.safe_dump(copy.deepcopy(doc))
        text = re.sub(r"TEST-ASSET-[A-L](,TEST-ASSET-[A-L])*", "SYMBOLS", text)
        return text.replace(f"me-shard-{shard}", "me-shard-X").replace(f"shard: {shard}", "shard: X").replace(
            f"value: {shard}\n", "value: X\n")

    a, b, c = (normalized(deps[f"me-shard-{s}"], s) for s in "abc")
    assert a == b == c


def test_labels_annotations_resources_probes_as_designed():
    deps = _deployments()
    for shard in "abc":
        d = deps[f"me-shard-{shard}"]
        pod = d["spec"]["template"]
        assert pod["metadata"]["labels"] == {"app": "matching-engine", "shard": shard, "job": "matching-engine"}
        assert pod["metadata"]["annotations"] == {
            "prometheus.io/scrape": "true", "prometheus.io/port": "9091", "prometheus.io/path": "/metrics"}
        c = pod["spec"]["containers"][0]
        assert c["imagePullPolicy"] == "Never" and not c["image"].endswith(":latest")
        assert c["resources"] == {"requests": {"cpu": "1", "memory": "512Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}}
        assert c["readinessProbe"]["httpGet"]["path"] == "/ready"  # not ready while its journal cannot write
        assert c["livenessProbe"]["httpGet"]["path"] == "/health"
        env = {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}
        assert env["ADMIN_TOKEN"] == {"secretKeyRef": {"name": m.ADMIN_SECRET, "key": m.ADMIN_SECRET_KEY}}
        assert env["SHARD_ID"] == shard and env["KAFKA_BOOTSTRAP"].startswith("redpanda-0.redpanda.matching-engine")
    gw = deps["edge-gateway"]["spec"]["template"]
    assert gw["metadata"]["labels"] == {"app": "edge-gateway", "job": "edge-gateway"}
    assert gw["spec"]["containers"][0]["resources"]["limits"] == {"cpu": "1", "memory": "512Mi"}
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in gw["spec"]["containers"][0]["env"]}
    assert env["ME_SHARD_MAP"].count("=http://me-shard-") == 3
    assert env["ADMIN_TOKEN"] == {"secretKeyRef": {"name": m.ADMIN_SECRET, "key": m.ADMIN_SECRET_KEY}}
    services = [d for d in m.app_objects() if d["kind"] == "Service"]
    assert all("annotations" not in s["metadata"] for s in services)  # pods only: no duplicate targets
    ss = next(d for d in m.redpanda() if d["kind"] == "StatefulSet")
    assert ss["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "local-path"
    rp = ss["spec"]["template"]["spec"]["containers"][0]
    assert rp["readinessProbe"] == {"tcpSocket": {"port": 9092}, "periodSeconds": 5}
    assert "dev-container" in rp["args"] and any(m.REDPANDA_ADVERTISED in a for a in rp["args"])
    assert rp["resources"]["limits"] == {"cpu": "2", "memory": "2Gi"}


def test_each_shard_pod_runs_its_relay_beside_it_on_the_same_journal():
    """A second container: the shard's image and environment, its own port, probes and resources, no token."""
    from matchlab.relay.config import RelayConfig

    for shard in "abc":
        pod = _deployments()[f"me-shard-{shard}"]["spec"]["template"]["spec"]
        engine, relay = pod["containers"]
        assert relay["name"] == "event-relay" and relay["image"] == engine["image"]
        assert relay["command"] == ["python", "-m", "matchlab.relay"]
        assert relay["volumeMounts"] == engine["volumeMounts"] == [{"name": "wal", "mountPath": "/data"}]
        assert relay["ports"] == [{"name": m.RELAY_PORT_NAME, "containerPort": 9093}]
        assert relay["resources"] == {"requests": {"cpu": "250m", "memory": "128Mi"},
                                      "limits": {"cpu": "500m", "memory": "256Mi"}}
        assert relay["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 9093}
        assert relay["livenessProbe"]["httpGet"] == {"path": "/health", "port": 9093}
        env = {e["name"]: e["value"] for e in relay["env"]}  # every value literal: no secret reference
        engine_env = {e["name"]: e.get("value") for e in engine["env"] if e["name"] != "ADMIN_TOKEN"}
        assert {k: v for k, v in env.items() if k != "RELAY_METRICS_PORT"} == engine_env  # one environment
        config = RelayConfig.from_env(env)
        assert config.shard_id == shard and config.metrics_port == 9093 and str(config.shard.wal_path) == "/data"


def test_prometheus_scrapes_the_relays_as_their_own_job():
    from matchlab.k8s.helm_values import prometheus_values, relay_scrape_job

    (job,) = yaml.safe_load(prometheus_values()["extraScrapeConfigs"])
    assert job == relay_scrape_job() and job["job_name"] == "event-relay"
    keep = job["relabel_configs"][0]
    assert keep["action"] == "keep" and keep["regex"] == m.RELAY_PORT_NAME
    shard_policy = next(p for p in m.network_policies() if p["metadata"]["name"] == "me-shards")
    from_prometheus = next(r for r in shard_policy["spec"]["ingress"]
                           if r["from"][0].get("namespaceSelector", {}).get("matchLabels", {}).get(
                               "kubernetes.io/metadata.name") == m.MONITORING_NAMESPACE)
    assert {p["port"] for p in from_prometheus["ports"]} == {9091, 9093}


def test_no_credentials_in_the_repository_k8s_files():
    text = "\n".join(p.read_text() for p in (ROOT / "k8s").rglob("*.yaml"))
    assert "adminPassword" not in text and "admin-password:" not in text
    assert grafana_values()["admin"]["existingSecret"] == "grafana-admin"


def plan(backend: KubernetesBackend, tmp: Path) -> list[str]:
    backend.start(Topology.MULTI, tmp / "run" / "multi")
    return [str(s) for s in backend.runner.steps]


def index(steps: list[str], pattern: str) -> int:
    for i, s in enumerate(steps):
        if re.search(pattern, s):
            return i
    raise AssertionError(f"no step matches {pattern!r}:\n" + "\n".join(steps))


def test_k3d_commands_in_order(tmp_path):
    steps = plan(K3dBackend(plan=True), tmp_path)
    order = [r"^k3d cluster list", r"^k3d cluster create matching-engine-exp --servers 1 --agents 3",
             r"^k3d kubeconfig get", r"build images .*matchlab/me-shard:0\.1\.0-", r"^k3d image import", r"crictl images",
             r"apply: Namespace/matching-engine", r"apply in monitoring: Secret/grafana-admin",
             r"StatefulSet/redpanda", r"Job/create-topics", r"Deployment/me-shard-a", r"ConfigMap/me-dashboard",
             r"^helm repo add --force-update prometheus-community", r"upgrade --install prometheus",
             r"upgrade --install grafana grafana-community/grafana", r"rollout status statefulset/redpanda",
             r"wait --for=condition=complete job/create-topics", r"rollout status deployment/edge-gateway"]
    positions = [index(steps, p) for p in order]
    assert positions == sorted(positions)
    create = steps[index(steps, r"^k3d cluster create")]
    for mapping in ("127.0.0.1:8080:30080@loadbalancer", "127.0.0.1:3000:30300@loadbalancer"):
        assert mapping in create
    assert "--disable=traefik@server:0" in create and "--wait" in create
    assert all("--kubeconfig" in s for s in steps if s.startswith(("kubectl", "helm --")))  # private kubeconfig
    # Load never goes through port-forward; only Prometheus (which has no host mapping) does.
    forwards = [s for s in steps if "port-forward" in s]
    assert len(forwards) == 1 and "svc/prometheus-server" in forwards[0] and "--address 127.0.0.1" in forwards[0]
    assert index(steps, r"port-forward") > index(steps, r"rollout status deployment/edge-gateway")
    assert not any("admin-password" in s for s in steps)  # the password travels on stdin only


def test_k3d_reuses_an_existing_cluster_and_never_deletes_it(tmp_path):
    runner = RecordingRunner(answers={("k3d", "cluster", "list"): f'[{{"name": "{CLUSTER}"}}]'})
    backend = K3dBackend(runner=runner, plan=True)
    steps = plan(backend, tmp_path)
    assert not any(s.startswith("k3d cluster create") for s in steps)
    backend.stop()
    assert not any(c[:3] == ("k3d", "cluster", "delete") for c in runner.commands())


def test_k3d_deletes_the_cluster_it_created_unless_kept(tmp_path):
    backend = K3dBackend(plan=True)
    plan(backend, tmp_path)
    backend.stop()
    assert backend.runner.commands()[-1] == ("k3d", "cluster", "delete", CLUSTER)
    kept = K3dBackend(plan=True, keep=True)
    plan(kept, tmp_path / "k")
    kept.stop()
    assert not any(c[:3] == ("k3d", "cluster", "delete") for c in kept.runner.commands())


def test_existing_cluster_pushes_images_and_deletes_only_namespaces_it_created(tmp_path):
    runner = RecordingRunner(answers={
        ("kubectl", "--context", "prod", "get", "namespaces"): '{"items": [{"metadata": {"name": "monitoring"}}]}',
    })
    backend = ExistingClusterBackend("prod", "registry.example:5000/team", runner=runner, plan=True)
    steps = plan(backend, tmp_path)
    assert not any(s.startswith("k3d") for s in steps)
    assert any("push" in s and "registry.example:5000/team/matchlab/me-shard:0.1.0" in s for s in steps)
    assert any("--kube-context prod" in s for s in steps if s.startswith("helm --"))
    assert backend.created_namespaces == ["matching-engine"]
    backend.stop()
    deletes = [c for c in runner.commands() if "delete" in c]
    assert deletes == [("kubectl", "--context", "prod", "delete", "namespace", "matching-engine", "--ignore-not-found",
                        "--wait=false")]
    image = m.app_deployment(app_services(Topology.MULTI)[0], "registry.example:5000/team")
    assert image["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"


def pods_json(*ready: bool) -> str:
    """`kubectl get pods -o json` output with one pod per flag, Ready or not."""
    return json.dumps({"items": [
        {"metadata": {"name": f"pod-{i}"}, "status": {"conditions": [{"type": "Ready", "status": str(r)}]}}
        for i, r in enumerate(ready)]})


def fault_backend(monkeypatch, *pod_answers: str) -> K3dBackend:
    monkeypatch.setattr(kube_module, "POLL_S", 0.0)
    runner = RecordingRunner(answers={("kubectl", "get", "pods"): list(pod_answers)})
    return K3dBackend(runner=runner, plan=True)


SHARD_B = ("-l", "app=matching-engine,shard=b", "-n", "matching-engine")


def test_kill_scales_the_deployment_to_zero_and_waits_until_no_pod_is_ready(monkeypatch):
    backend = fault_backend(monkeypatch, pods_json(True), pods_json(False), "")
    backend.kill_service("me-shard-b")
    assert backend.runner.commands() == [
        ("kubectl", "scale", "deployment/me-shard-b", "--replicas=0", "-n", "matching-engine"),
        ("kubectl", "delete", "pod", *SHARD_B, "--grace-period=0", "--force", "--ignore-not-found"),
        ("kubectl", "get", "pods", *SHARD_B, "-o", "json"),  # still Ready: asked again
        ("kubectl", "get", "pods", *SHARD_B, "-o", "json"),  # terminating, not Ready: down
    ]


def test_restart_scales_back_only_once_no_pod_is_left_and_waits_for_ready(monkeypatch):
    backend = fault_backend(monkeypatch, pods_json(False), "")
    backend.restart_service("me-shard-b")
    assert backend.runner.commands() == [
        ("kubectl", "scale", "deployment/me-shard-b", "--replicas=0", "-n", "matching-engine"),
        ("kubectl", "get", "pods", *SHARD_B, "-o", "json"),  # a pod not Ready still holds the journal's volume
        ("kubectl", "get", "pods", *SHARD_B, "-o", "json"),
        ("kubectl", "scale", "deployment/me-shard-b", "--replicas=1", "-n", "matching-engine"),
        ("kubectl", "rollout", "status", "deployment/me-shard-b", "-n", "matching-engine", "--timeout=600s"),
    ]


def test_restarting_prometheus_acts_on_the_charts_server_in_monitoring(monkeypatch):
    backend = fault_backend(monkeypatch, "")
    backend.restart_service("prometheus")
    selector = "app.kubernetes.io/name=prometheus,app.kubernetes.io/instance=prometheus,app.kubernetes.io/component=server"
    assert backend.runner.commands() == [
        ("kubectl", "scale", "deployment/prometheus-server", "--replicas=0", "-n", "monitoring"),
        ("kubectl", "get", "pods", "-l", selector, "-n", "monitoring", "-o", "json"),
        ("kubectl", "scale", "deployment/prometheus-server", "--replicas=1", "-n", "monitoring"),
        ("kubectl", "rollout", "status", "deployment/prometheus-server", "-n", "monitoring", "--timeout=600s"),
    ]


def test_broker_outage_scales_the_statefulset_down_until_its_pod_is_gone_and_back(monkeypatch):
    backend = fault_backend(monkeypatch, pods_json(False), "")
    backend.pause_broker()
    backend.resume_broker()
    broker = ("-l", "app=redpanda", "-n", "matching-engine")
    assert backend.runner.commands() == [
        ("kubectl", "scale", "statefulset/redpanda", "--replicas=0", "-n", "matching-engine"),
        ("kubectl", "get", "pods", *broker, "-o", "json"),
        ("kubectl", "get", "pods", *broker, "-o", "json"),
        ("kubectl", "scale", "statefulset/redpanda", "--replicas=1", "-n", "matching-engine"),
        ("kubectl", "rollout", "status", "statefulset/redpanda", "-n", "matching-engine", "--timeout=600s"),
    ]


def test_a_pod_that_never_goes_times_out_naming_it(monkeypatch):
    monkeypatch.setattr(kube_module, "WAIT_TIMEOUT_S", 0.05)
    backend = fault_backend(monkeypatch, pods_json(True))
    with pytest.raises(WaitTimeoutError, match="none ready: pods app=matching-engine,shard=b in matching-engine"):
        backend.kill_service("me-shard-b")


def test_an_unknown_service_is_refused_naming_the_known_ones():
    with pytest.raises(ConfigError, match="'me-shard-z'.*me-shard-a.*prometheus"):
        K3dBackend(plan=True).kill_service("me-shard-z")


def test_data_outlives_pods_shard_journals_and_the_broker_have_volume_claims():
    objects = m.app_objects()
    claims = {d["metadata"]["name"] for d in objects if d["kind"] == "PersistentVolumeClaim"}
    for shard in "abc":
        pod = _deployments()[f"me-shard-{shard}"]["spec"]["template"]["spec"]
        (volume,) = pod["volumes"]
        assert volume["persistentVolumeClaim"]["claimName"] in claims
        assert pod["containers"][0]["volumeMounts"] == [{"name": volume["name"], "mountPath": "/data"}]
        assert _deployments()[f"me-shard-{shard}"]["spec"]["strategy"] == {"type": "Recreate"}
    assert len(claims) == 3
    statefulset = next(d for d in m.redpanda() if d["kind"] == "StatefulSet")
    assert statefulset["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"


def test_every_backend_satisfies_the_protocol(tmp_path):
    assert isinstance(LocalBackend(tmp_path), Backend)
    assert isinstance(K3dBackend(plan=True), Backend)
    assert isinstance(ExistingClusterBackend("c", "r", plan=True), Backend)


def test_experiments_know_no_backend():
    """Same test code on every backend: experiments never import a backend."""
    for path in (ROOT / "experiments").glob("*.py"):
        tree = ast.parse(path.read_text())
        names = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)] + [
            a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert not [n for n in names if n and (n.startswith("matchlab.k8s") or n == "matchlab.stack.local")], path


def test_image_runtime_requirements_match_the_project_pins_and_cover_the_services():
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    runtime = [ln.strip() for ln in (ROOT / "docker" / "requirements-runtime.txt").read_text().splitlines()
               if ln.strip() and not ln.startswith("#")]
    assert set(runtime) <= set(pins)
    code = ("import sys, matchlab.shard.__main__, matchlab.gateway.__main__, matchlab.loadgen.__main__; "
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())
    third_party = {n for n in loaded - set(sys.stdlib_module_names) if not n.startswith("_")} - {"matchlab"}
    allowed = {r.split("==")[0].replace("-", "_") for r in runtime} | {
        "multidict", "yarl", "aiosignal", "frozenlist", "attr", "attrs", "propcache", "aiohappyeyeballs", "idna",
        "typing_extensions", "cython_runtime", "anyio", "certifi", "httpcore", "h11", "sniffio",
        "click", "pygments", "rich"}
    # (aiohttp's and httpx's own dependencies, and what httpx's CLI imports when installed; Cython's runtime module)
    module_names = {"prometheus_client", "confluent_kafka", "msgspec", "orjson", "uvloop", "aiohttp", "hdrh", "pyhdrh",
                    "cramjam", "httpx"}
    assert third_party <= allowed | module_names, third_party - allowed - module_names


def test_k3d_smoke_stops_at_once_with_the_prerequisite_message(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "experiments/test_smoke.py", "--backend", "k3d",
         "--reports-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    out = proc.stdout + proc.stderr
    if "no Docker engine answers" not in out and proc.returncode == 0:
        pytest.skip("a Docker engine and k3d are available here: the prerequisite failure cannot be shown")
    assert proc.returncode == 4, out
    # The first thing missing: the Docker engine, or (where one runs, as in CI) k3d itself.
    assert "missing prerequisite" in out and ("docker engine" in out or "needs k3d" in out) and "Traceback" not in out
    assert not (tmp_path / "stack-pids.json").exists()
    assert not list(tmp_path.rglob("kubeconfig"))


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_gateway_replicas_validate_and_only_the_gateway_scales(version):
    apps = m.all_documents(gateway_replicas=3)["30-apps.yaml"]
    replicas = {d["metadata"]["name"]: d["spec"]["replicas"] for d in apps if d["kind"] == "Deployment"}
    assert replicas == {"me-shard-a": 1, "me-shard-b": 1, "me-shard-c": 1, "edge-gateway": 3}
    for doc in apps:
        kubernetes_validate.validate(doc, version, strict=True)


def test_a_shard_is_never_given_a_second_replica():
    shard = next(s for s in app_services(Topology.MULTI) if s.shard == "b")
    with pytest.raises(ConfigError, match="me-shard-b runs as exactly one replica .one matcher per shard., not 2"):
        m.app_deployment(shard, replicas=2)


def test_gateway_replicas_reach_the_cluster_and_a_restart_brings_them_all_back(monkeypatch, tmp_path):
    backend = K3dBackend(plan=True, gateway_replicas=3)
    plan(backend, tmp_path)
    applied = [yaml.safe_load(d) for argv, text in backend.runner.inputs if "apply" in argv for d in text.split("---\n")]
    gateway = next(d for d in applied if d and d["kind"] == "Deployment" and d["metadata"]["name"] == "edge-gateway")
    assert gateway["spec"]["replicas"] == 3
    assert backend.facts()["gateway"] == "3 replicas of the edge-gateway Deployment, each pod scraped"

    monkeypatch.setattr(kube_module, "POLL_S", 0.0)
    backend = K3dBackend(runner=RecordingRunner(answers={("kubectl", "get", "pods"): [""]}), plan=True,
                         gateway_replicas=3)
    backend.restart_service("edge-gateway")
    backend.restart_service("me-shard-a")
    scaled = [c[2:4] for c in backend.runner.commands() if c[1] == "scale"]
    assert scaled == [("deployment/edge-gateway", "--replicas=0"), ("deployment/edge-gateway", "--replicas=3"),
                      ("deployment/me-shard-a", "--replicas=0"), ("deployment/me-shard-a", "--replicas=1")]


def test_log_tails_cover_every_gateway_replica():
    backend = K3dBackend(runner=RecordingRunner(), plan=True, gateway_replicas=3)
    services = {s.name for s in app_services(Topology.MULTI)}
    assert set(backend.log_tails()) == services | {f"me-relay-{s}" for s in "abc"}  # each shard's relay container
    logs = {c[2:5]: c for c in backend.runner.commands() if c[1] == "logs"}
    assert logs[("deployment/me-shard-a", "-c", "me-shard-a")] == (
        "kubectl", "logs", "deployment/me-shard-a", "-c", "me-shard-a", "-n", "matching-engine", "--tail=40")
    assert logs[("deployment/me-shard-a", "-c", "event-relay")][:5] == (
        "kubectl", "logs", "deployment/me-shard-a", "-c", "event-relay")
    logs = {c[2]: c for c in backend.runner.commands() if c[1] == "logs"}
    assert logs["-l"] == ("kubectl", "logs", "-l", "app=edge-gateway", "--prefix", "--max-log-requests=3",
                          "-n", "matching-engine", "--tail=40")
