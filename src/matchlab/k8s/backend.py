"""The Kubernetes backends: a k3d cluster the run creates (or reuses), or an existing cluster.

Both implement ``stack.backend.Backend`` over the same steps, issued through
a ``CommandRunner`` so that ``--plan`` prints exactly what a run would do:

1. check prerequisites (Docker engine, k3d, helm, kubectl) - one message for all that is missing;
2. k3d: create cluster ``matching-engine-exp`` (1 server, 3 agents, Traefik off, host ports mapped
   through the load balancer, ``--wait``) unless it exists, into a private kubeconfig;
3. build the shard and gateway images (Docker SDK); k3d: import them and verify every node has
   them; existing cluster: push them to ``--image-registry``;
4. server-side apply namespaces, the Grafana admin Secret (password generated per cluster, sent on
   stdin, never in argv or git), Redpanda, the topics Job, shards, gateway, dashboard ConfigMap -
   namespace passed explicitly every time;
5. ``helm upgrade --install --wait`` Prometheus and Grafana with the generated values;
6. wait for every workload with kubectl's watch-based ``rollout status`` / ``wait``;
7. with ``load_from="cluster"``: per load phase, an Indexed Job of load-generator pods
   (``load_job``), read back from their logs and merged (``run_load_in_cluster``).

Load reaches the gateway and shards through the k3d load balancer's port
mappings (NodePorts), never ``kubectl port-forward``. Teardown deletes the
cluster only if this run created it (and ``--keep-stack`` is off); on an
existing cluster only the namespaces this run created are deleted.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from matchlab.errors import CommandError, ConfigError, PrerequisiteError
from matchlab.k8s import manifests as m
from matchlab.k8s.commands import CommandRunner, RecordingRunner, SubprocessRunner
from matchlab.k8s.helm_values import CHART_WORKLOADS, GRAFANA_CHART, GRAFANA_SECRET, PROMETHEUS_CHART
from matchlab.k8s.load_job import COMPLETION_INDEX, LOADGEN_IMAGE, START_LEAD_S, ClusterLoad, load_job
from matchlab.k8s.prereq import check_prerequisites
from matchlab.loadgen.results import LoadResult
from matchlab.loadgen.segments import merged_result, read_result_lines
from matchlab.stack.spec import Endpoints, Topology, app_services
from matchlab.waiting import wait_until

log = logging.getLogger(__name__)

CLUSTER = "matching-engine-exp"
AGENTS = 3
WAIT_TIMEOUT_S = 600
WAIT_TIMEOUT = f"{WAIT_TIMEOUT_S}s"
POLL_S = 1.0
HELM_TIMEOUT = "10m"
ROOT = Path(__file__).resolve().parents[3]
IMAGES = {"shard": m.SHARD_IMAGE, "gateway": m.GATEWAY_IMAGE}


class KubernetesBackend:
    """Shared steps; subclasses decide cluster lifecycle, image delivery and addresses."""

    name = "k8s"

    def __init__(self, runner: CommandRunner | None = None, plan: bool = False, keep: bool = False,
                 load_from: str = "host", load_workers: int | None = None) -> None:
        if load_from not in ("host", "cluster"):
            raise ConfigError(f"load_from must be 'host' or 'cluster', got {load_from!r}")
        self.plan = plan
        self.keep = keep
        self.load_from = load_from
        self.load_workers = load_workers
        self.runner: CommandRunner = runner or (RecordingRunner() if plan else SubprocessRunner())
        self.kube_args: list[str] = []
        self.created_namespaces: list[str] = []
        self.run_id = ""

    def images(self) -> dict[str, str]:
        """Image build target -> tag; the load generator's only when load runs in the cluster."""
        return {**IMAGES, "loadgen": LOADGEN_IMAGE} if self.load_from == "cluster" else dict(IMAGES)

    # hooks ---------------------------------------------------------------------
    def tools(self) -> tuple[str, ...]:
        return ("helm", "kubectl")

    def prepare_cluster(self, run_dir: Path) -> None: ...

    def deliver_images(self) -> None: ...

    def registry(self) -> str:
        return ""

    def host(self) -> str:
        return "127.0.0.1"

    def teardown_cluster(self) -> None: ...

    # the steps -------------------------------------------------------------------
    def kubectl(self, *args: str, input_text: str | None = None, check: bool = True) -> str:
        return self.runner.run(["kubectl", *self.kube_args, *args], check=check, input_text=input_text)

    def helm(self, *args: str) -> str:
        helm_kube = [a.replace("--context", "--kube-context") for a in self.kube_args]
        return self.runner.run(["helm", *helm_kube, *args])

    def start(self, topology: Topology, run_dir: Path) -> Endpoints:
        self.run_id = run_dir.parent.name or run_dir.name
        if self.plan:
            self.runner.note(f"check prerequisites: Docker engine, {', '.join(self.tools())}")
        else:
            check_prerequisites(need_docker=self.needs_docker(), tools=self.tools())
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.prepare_cluster(run_dir)
            self.build_images()
            self.deliver_images()
            self.apply_all(run_dir)
            self.install_charts()
            self.wait_ready(topology)
        except BaseException:
            self.stop()
            raise
        return self.endpoints(topology)

    def needs_docker(self) -> bool:
        return True

    def build_images(self) -> None:
        if self.plan:
            for target, tag in self.images().items():
                self.runner.note(f"docker SDK: build {ROOT / 'Dockerfile'} --target {target} -t {tag}")
            return
        import docker

        client = docker.from_env()
        for target, tag in self.images().items():
            log.info("building image %s (target %s)", tag, target)
            client.images.build(path=str(ROOT), dockerfile="Dockerfile", target=target, tag=tag, rm=True)

    def _existing_namespaces(self) -> set[str]:
        out = self.kubectl("get", "namespaces", "-o", "json", check=False)
        try:
            return {i["metadata"]["name"] for i in json.loads(out)["items"]}
        except (ValueError, KeyError):
            return set()

    def apply(self, docs: list[dict], namespace: str | None) -> None:
        if not docs:
            return
        objects = ", ".join(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
        self.runner.note(f"server-side apply{' in ' + namespace if namespace else ''}: {objects}")
        ns = ["-n", namespace] if namespace else []
        self.kubectl("apply", "--server-side", "--field-manager=matchlab", *ns, "-f", "-",
                     input_text="---\n".join(yaml.safe_dump(d) for d in docs))

    def apply_all(self, run_dir: Path) -> None:
        existing = self._existing_namespaces()
        docs = m.all_documents(self.registry(), self.run_id)
        namespaces = docs.pop("00-namespaces.yaml")
        self.created_namespaces = [d["metadata"]["name"] for d in namespaces if d["metadata"]["name"] not in existing]
        self.apply([d for d in namespaces if d["metadata"]["name"] in self.created_namespaces], None)
        self.apply_grafana_secret()
        for group in docs.values():
            self.apply(group, m.APP_NAMESPACE)
        from matchlab.k8s.helm_values import dashboard_configmap

        self.apply([dashboard_configmap()], m.MONITORING_NAMESPACE)

    def apply_grafana_secret(self) -> None:
        found = self.kubectl("get", "secret", GRAFANA_SECRET, "-n", m.MONITORING_NAMESPACE, "--ignore-not-found", "-o",
                             "name", check=False)
        if found.strip():
            return  # one password per cluster: never rotated under a running Grafana
        secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                  "metadata": {"name": GRAFANA_SECRET, "namespace": m.MONITORING_NAMESPACE},
                  "stringData": {"admin-user": "admin", "admin-password": secrets.token_urlsafe(20)}}
        self.apply([secret], m.MONITORING_NAMESPACE)

    def install_charts(self) -> None:
        for repo, url, _, _ in (PROMETHEUS_CHART, GRAFANA_CHART):
            self.runner.run(["helm", "repo", "add", "--force-update", repo, url])
        self.runner.run(["helm", "repo", "update"])
        for release, (repo, _, chart, version), values in (
            ("prometheus", PROMETHEUS_CHART, "prometheus-values.yaml"),
            ("grafana", GRAFANA_CHART, "grafana-values.yaml"),
        ):
            self.helm("upgrade", "--install", release, f"{repo}/{chart}", "--version", version,
                      "--namespace", m.MONITORING_NAMESPACE, "-f", str(ROOT / "k8s" / "helm" / values),
                      "--wait", "--timeout", HELM_TIMEOUT)

    def wait_ready(self, topology: Topology) -> None:
        ns = ["-n", m.APP_NAMESPACE]
        self.kubectl("rollout", "status", "statefulset/redpanda", *ns, f"--timeout={WAIT_TIMEOUT}")
        self.kubectl("wait", "--for=condition=complete", "job/create-topics", *ns, f"--timeout={WAIT_TIMEOUT}")
        for spec in app_services(Topology.MULTI):
            self.kubectl("rollout", "status", f"deployment/{spec.name}", *ns, f"--timeout={WAIT_TIMEOUT}")

    def endpoints(self, topology: Topology) -> Endpoints:
        h, p = self.host(), m.HOST_PORTS
        shards = topology.shards
        return Endpoints(
            shards={s: f"http://{h}:{p[f'me-shard-{s}']}" for s in shards},
            shard_metrics={s: f"http://{h}:{p[f'me-shard-{s}-metrics']}/metrics" for s in shards},
            gateway=f"http://{h}:{p['edge-gateway']}" if topology.has_gateway else None,
            gateway_metrics=None,
            prometheus=f"http://{h}:{p['prometheus']}",
            broker=f"{h}:{p['redpanda-external']}",
            grafana=f"http://{h}:{p['grafana']}",
        )

    # operations ---------------------------------------------------------------------
    def stop(self) -> None:
        if self.keep:
            return
        for ns in reversed(self.created_namespaces):
            self.kubectl("delete", "namespace", ns, "--ignore-not-found", "--wait=false", check=False)
        self.created_namespaces = []
        self.teardown_cluster()

    # In-cluster load ----------------------------------------------------------------------------------

    def default_load_workers(self) -> int:
        """One load worker per node that takes ordinary pods."""
        out = self.kubectl("get", "nodes", "-o", "json")
        nodes = json.loads(out)["items"] if out.strip() else []
        return max(1, sum(1 for n in nodes if not n["spec"].get("unschedulable") and not any(
            t.get("effect") == "NoSchedule" for t in n["spec"].get("taints", []))))

    def job_state(self, name: str) -> str:
        """"Complete", "Failed" or "" (still running) for a Job."""
        out = self.kubectl("get", "job", name, "-n", m.APP_NAMESPACE, "-o", "json")
        if not out.strip():
            return "Complete"  # a recorded plan: nothing runs
        conditions = json.loads(out).get("status", {}).get("conditions", [])
        return next((c["type"] for c in conditions if c["type"] in ("Complete", "Failed") and c["status"] == "True"), "")

    def run_load_in_cluster(self, load: ClusterLoad) -> LoadResult:
        """Run one load phase as an Indexed Job, collect every worker's measurements and merge them."""
        ns = m.APP_NAMESPACE
        start_at = time.time() + START_LEAD_S
        self.runner.note(f"in-cluster load {load.name}: Indexed Job of {load.workers} workers, worker i sending "
                         f"slots i, i+{load.workers}, ... of one schedule (seed {load.seed}), all starting in "
                         f"{START_LEAD_S} s")
        self.kubectl("delete", "job", load.name, "-n", ns, "--ignore-not-found", "--wait=true")
        self.apply([load_job(load, start_at, self.registry(), self.run_id)], ns)
        try:
            state = wait_until(lambda: self.job_state(load.name), load.timeout_s, f"job/{load.name} to finish",
                               interval=POLL_S)
            parts = []
            for index in range(load.workers):
                log_text = self.kubectl("logs", "-l", f"batch.kubernetes.io/job-name={load.name},"
                                        f"{COMPLETION_INDEX}={index}", "-n", ns, "--tail=-1", check=state != "Failed")
                if state == "Failed":
                    parts.append(log_text)
                elif not self.plan:
                    parts.append(read_result_lines(log_text, f"worker {index} of job/{load.name}"))
            if state == "Failed":
                tails = "\n".join(f"--- worker {i}:\n" + "\n".join(t.splitlines()[-15:]) for i, t in enumerate(parts))
                raise CommandError(f"in-cluster load job/{load.name} failed:\n{tails}")
        finally:
            self.kubectl("delete", "job", load.name, "-n", ns, "--ignore-not-found", "--wait=false", check=False)
        return merged_result(parts, load.profile)

    # Faults mean what they mean on the local backend: a killed service stays down until restarted (its
    # Deployment must not replace it), a restarted shard replays its journal (a volume claim), and the
    # broker's outage keeps its data (its StatefulSet's volume claim).

    def pods(self, workload: Workload) -> list[tuple[str, bool]]:
        """(name, Ready) of every pod of the workload that still exists."""
        out = self.kubectl("get", "pods", "-l", workload.selector, "-n", workload.namespace, "-o", "json")
        items = json.loads(out)["items"] if out.strip() else []  # a recorded plan answers nothing: no pods
        return [(p["metadata"]["name"], any(c["type"] == "Ready" and c["status"] == "True"
                                           for c in p.get("status", {}).get("conditions", []))) for p in items]

    def wait_pods(self, workload: Workload, until: str) -> None:
        """Until no pod of the workload is Ready (``until="none ready"``) or none is left (``"none left"``)."""
        def done() -> bool:
            pods = self.pods(workload)
            return not (pods if until == "none left" else [name for name, ready in pods if ready])

        wait_until(done, WAIT_TIMEOUT_S, f"{until}: pods {workload.selector} in {workload.namespace}",
                   interval=POLL_S)

    def scale(self, workload: Workload, replicas: int) -> None:
        self.kubectl("scale", workload.ref, f"--replicas={replicas}", "-n", workload.namespace)

    def pause_broker(self) -> None:
        """Scale Redpanda to 0 until its pod is gone (its volume claim keeps topics and data)."""
        self.scale(BROKER, 0)
        self.wait_pods(BROKER, "none left")

    def resume_broker(self) -> None:
        self.scale(BROKER, 1)
        self.kubectl("rollout", "status", BROKER.ref, "-n", BROKER.namespace, f"--timeout={WAIT_TIMEOUT}")

    def kill_service(self, name: str) -> None:
        """Crash it and keep it down: scale to 0 first (nothing replaces it), then delete its pods at once."""
        workload = workload_of(name)
        self.scale(workload, 0)
        self.kubectl("delete", "pod", "-l", workload.selector, "-n", workload.namespace, "--grace-period=0",
                     "--force", "--ignore-not-found")
        self.wait_pods(workload, "none ready")

    def restart_service(self, name: str) -> None:
        """Stop it (if running) until no pod is left, start one again and wait until it is Ready."""
        workload = workload_of(name)
        self.scale(workload, 0)
        self.wait_pods(workload, "none left")  # the journal's volume is never shared by two pods
        self.scale(workload, 1)
        self.kubectl("rollout", "status", workload.ref, "-n", workload.namespace, f"--timeout={WAIT_TIMEOUT}")

    def log_tails(self) -> dict[str, str]:
        return {
            spec.name: self.kubectl("logs", f"deployment/{spec.name}", "-n", m.APP_NAMESPACE, "--tail=40", check=False)
            for spec in app_services(Topology.MULTI)
        }

    def facts(self) -> dict[str, str]:
        return {"backend": f"{self.name} ({'plan only' if self.plan else 'cluster'})"}


@dataclass(frozen=True)
class Workload:
    """What a fault acts on: a Deployment or StatefulSet and the labels of its pods."""

    namespace: str
    ref: str  # kind/name, as kubectl takes it
    labels: tuple[tuple[str, str], ...]

    @property
    def selector(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.labels)


BROKER = Workload(m.APP_NAMESPACE, "statefulset/redpanda", (("app", "redpanda"),))


def workload_of(name: str) -> Workload:
    """The workload behind a service name the experiments use (the same names as on the local backend)."""
    for spec in app_services(Topology.MULTI):
        if spec.name == name:
            return Workload(m.APP_NAMESPACE, f"deployment/{name}", tuple(spec.labels.items()))
    if name in CHART_WORKLOADS:
        ref, labels = CHART_WORKLOADS[name]
        return Workload(m.MONITORING_NAMESPACE, ref, tuple(labels.items()))
    known = [s.name for s in app_services(Topology.MULTI)] + list(CHART_WORKLOADS)
    raise ConfigError(f"no service named {name!r}; known: {known}")


class K3dBackend(KubernetesBackend):
    name = "k3d"

    def __init__(self, runner: CommandRunner | None = None, plan: bool = False, keep: bool = False,
                 load_from: str = "host", load_workers: int | None = None) -> None:
        super().__init__(runner, plan, keep, load_from, load_workers)
        self.created_cluster = False

    def default_load_workers(self) -> int:
        return AGENTS

    def tools(self) -> tuple[str, ...]:
        return ("k3d", "helm", "kubectl")

    def cluster_exists(self) -> bool:
        out = self.runner.run(["k3d", "cluster", "list", "-o", "json"], check=False)
        try:
            return any(c.get("name") == CLUSTER for c in json.loads(out or "[]"))
        except ValueError:
            return False

    def prepare_cluster(self, run_dir: Path) -> None:
        if not self.cluster_exists():
            ports = [arg for name, host in m.HOST_PORTS.items()
                     for arg in ("-p", f"{host}:{m.NODE_PORTS[name]}@loadbalancer")]
            self.runner.run(["k3d", "cluster", "create", CLUSTER, "--servers", "1", "--agents", str(AGENTS),
                             "--k3s-arg", "--disable=traefik@server:0", *ports, "--wait",
                             "--kubeconfig-update-default=false", "--kubeconfig-switch-context=false"])
            self.created_cluster = True
        kubeconfig = run_dir / "kubeconfig"
        config = self.runner.run(["k3d", "kubeconfig", "get", CLUSTER])
        if not self.plan:
            kubeconfig.write_text(config)
            kubeconfig.chmod(0o600)
        self.kube_args = ["--kubeconfig", str(kubeconfig)]

    def deliver_images(self) -> None:
        images = list(self.images().values())
        self.runner.run(["k3d", "image", "import", *images, "--cluster", CLUSTER])
        nodes = [f"k3d-{CLUSTER}-server-0", *(f"k3d-{CLUSTER}-agent-{i}" for i in range(AGENTS))]
        for node in nodes:
            listed = self.runner.run(["docker", "exec", node, "crictl", "images", "-o", "json"])
            if self.plan:
                continue
            tags = {t for img in json.loads(listed).get("images", []) for t in img.get("repoTags", [])}
            missing = [i for i in images if not any(t.endswith(i) for t in tags)]
            if missing:
                raise PrerequisiteError(f"images {missing} are not on node {node} after `k3d image import`")

    def teardown_cluster(self) -> None:
        if self.created_cluster and not self.keep:
            self.runner.run(["k3d", "cluster", "delete", CLUSTER], check=False)
            self.created_cluster = False


class ExistingClusterBackend(KubernetesBackend):
    """A cluster the user already has: never created or deleted here."""

    name = "k8s"

    def __init__(self, context: str, image_registry: str, runner: CommandRunner | None = None, plan: bool = False,
                 keep: bool = False, load_from: str = "host", load_workers: int | None = None) -> None:
        super().__init__(runner, plan, keep, load_from, load_workers)
        self.context = context
        self.image_registry = image_registry.rstrip("/")
        self.kube_args = ["--context", context]
        self._host = ""

    def prepare_cluster(self, run_dir: Path) -> None:
        self.kubectl("cluster-info")

    def registry(self) -> str:
        return self.image_registry

    def deliver_images(self) -> None:
        for tag in self.images().values():
            remote = f"{self.image_registry}/{tag}"
            if self.plan:
                self.runner.note(f"docker SDK: tag {tag} {remote} and push it")
                continue
            import docker

            client = docker.from_env()
            client.images.get(tag).tag(remote)
            for line in client.images.push(remote, stream=True, decode=True):
                if "error" in line:
                    raise PrerequisiteError(f"pushing {remote} failed: {line['error']}")

    def host(self) -> str:
        if not self._host:
            out = self.kubectl("get", "nodes", "-o",
                               "jsonpath={.items[0].status.addresses[?(@.type=='InternalIP')].address}")
            self._host = out.strip() or "127.0.0.1"
        return self._host
