"""The Kubernetes backends: a k3d cluster the run creates (or reuses), or an existing cluster.

Both implement ``stack.backend.Backend`` over the same steps, issued through
a ``CommandRunner`` so that ``--plan`` prints exactly what a run would do:

1. check prerequisites (Docker engine, k3d, helm, kubectl) - one message for all that is missing;
2. k3d: create cluster ``matching-engine-exp`` (1 server, 3 agents, Traefik off, host ports mapped
   through the load balancer on 127.0.0.1 - or ``--expose-on ADDRESS`` - ``--wait``) unless it
   exists (then its mappings must bind that same address), into a private kubeconfig;
3. build the shard and gateway images (Docker SDK); k3d: import them and verify every node has
   them; existing cluster: push them to ``--image-registry``;
4. server-side apply namespaces, the Grafana admin Secret and the services' admin-token Secret
   (generated per cluster, sent on stdin, never in argv, logs or git), the NetworkPolicies (their
   node addresses read from the cluster), Redpanda, the topics Job, shards, gateway, dashboard
   ConfigMap - namespace passed explicitly every time;
5. ``helm upgrade --install --wait`` Prometheus and Grafana with the generated values;
6. wait for every workload with kubectl's watch-based ``rollout status`` / ``wait``;
7. open ``kubectl port-forward`` to Prometheus on 127.0.0.1 (queries and the load generator's
   remote write: Prometheus has no host mapping, so this authenticated path is the only way in).
8. with ``load_from="cluster"``: per load phase, an Indexed Job of load-generator pods per order
   flow (``load_job``), read back from their logs and merged (``run_load_jobs``); the experiments
   reach this through the backend's ``load_driver()`` (``matchlab.k8s.load_driver``).

Load reaches the gateway and shards through the k3d load balancer's port
mappings (NodePorts), never ``kubectl port-forward``. Teardown deletes the
cluster only if this run created it (and ``--keep-stack`` is off); on an
existing cluster only the namespaces this run created are deleted.
"""

from __future__ import annotations

import atexit
import base64
import ipaddress
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from matchlab.admin_auth import new_token
from matchlab.errors import CommandError, ConfigError, PrerequisiteError, UsageError
from matchlab.k8s import manifests as m
from matchlab.k8s.commands import CommandRunner, RecordingRunner, SubprocessRunner
from matchlab.k8s.helm_values import CHART_WORKLOADS, GRAFANA_CHART, GRAFANA_SECRET, PROMETHEUS_CHART
from matchlab.k8s.load_job import COMPLETION_INDEX, LOADGEN_IMAGE, START_LEAD_S, ClusterLoad, load_job
from matchlab.k8s.prereq import check_prerequisites
from matchlab.k8s.tools import search_path
from matchlab.loadgen.results import LoadResult
from matchlab.loadgen.segments import merged_result, read_result_lines
from matchlab.stack.probes import HttpProbe, free_port
from matchlab.stack.process import ManagedProcess, stop_after_failure
from matchlab.stack.spec import Endpoints, ServiceSpec, Topology, app_services
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
LOOPBACK = "127.0.0.1"
PROMETHEUS_SERVICE = "svc/prometheus-server"
PROMETHEUS_SERVICE_PORT = 80
PORT_FORWARD_READY_S = 60.0


def exposure_warning(address: str) -> str | None:
    """What binding the k3d port mappings on ``address`` opens up, or None for loopback."""
    if ipaddress.ip_address(address).is_loopback:
        return None
    return (f"--expose-on {address}: the gateway, the shards and their metrics, Redpanda and Grafana are reachable "
            f"by every host that can reach {address}; orders, health and metrics need no credentials (admin and "
            f"seed need the stack's token; Prometheus stays cluster-only)")


def url_host(address: str) -> str:
    """An address as the host part of a URL (IPv6 in brackets)."""
    return f"[{address}]" if ":" in address else address


class KubernetesBackend:
    """Shared steps; subclasses decide cluster lifecycle, image delivery and addresses."""

    name = "k8s"

    def __init__(self, runner: CommandRunner | None = None, plan: bool = False, keep: bool = False,
                 load_from: str = "host", load_workers: int | None = None, gateway_replicas: int = 1) -> None:
        if load_from not in ("host", "cluster"):
            raise ConfigError(f"load_from must be 'host' or 'cluster', got {load_from!r}")
        self.gateway_replicas = gateway_replicas  # --gateway-workers: the edge-gateway Deployment's replicas
        self.plan = plan
        self.keep = keep
        self.load_from = load_from
        self.load_workers = load_workers
        self.runner: CommandRunner = runner or (RecordingRunner() if plan else SubprocessRunner())
        self.kube_args: list[str] = []
        self.created_namespaces: list[str] = []
        self.run_id = ""
        self.admin_token = ""
        self.prometheus_url = ""
        self._port_forward: ManagedProcess | None = None
        # Called just before this backend creates a cluster or namespaces: `matchlab up` records them then, so
        # `matchlab down` deletes them even after an `up` killed half-way.
        self.on_create: Callable[[], None] = lambda: None

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
            self.open_prometheus(run_dir)
        except BaseException:
            stop_after_failure(self.stop, "the cluster stack")
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
        docs = m.all_documents(self.registry(), self.run_id, self.node_sources(), url_host(self.host()),
                               self.gateway_replicas)
        namespaces = docs.pop("00-namespaces.yaml")
        self.created_namespaces = [d["metadata"]["name"] for d in namespaces if d["metadata"]["name"] not in existing]
        if self.created_namespaces:
            self.on_create()
        self.apply([d for d in namespaces if d["metadata"]["name"] in self.created_namespaces], None)
        self.apply_grafana_secret()
        self.admin_token = self.apply_admin_secret()
        for group in docs.values():
            for ns in dict.fromkeys(d["metadata"]["namespace"] for d in group):
                self.apply([d for d in group if d["metadata"]["namespace"] == ns], ns)
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

    def apply_admin_secret(self) -> str:
        """The services' admin token: the cluster's own if it has one, else a new one; returned, never printed."""
        found = self.kubectl("get", "secret", m.ADMIN_SECRET, "-n", m.APP_NAMESPACE, "--ignore-not-found",
                             "-o", f"jsonpath={{.data.{m.ADMIN_SECRET_KEY}}}", check=False).strip()
        if found:  # one token per cluster: running pods hold it
            return base64.b64decode(found).decode()
        token = new_token()
        secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                  "metadata": {"name": m.ADMIN_SECRET, "namespace": m.APP_NAMESPACE},
                  "stringData": {m.ADMIN_SECRET_KEY: token}}
        self.apply([secret], m.APP_NAMESPACE)
        return token

    def node_sources(self) -> tuple[str, ...]:
        """Node-owned addresses that port-mapped traffic arrives from (see manifests.K3D_NODE_SOURCES)."""
        out = self.kubectl("get", "nodes", "-o", "json", check=False)
        try:
            nodes = json.loads(out)["items"]
        except (ValueError, KeyError):
            nodes = []  # plan, or no answer: k3d's defaults
        cidrs = [c for n in nodes for c in n.get("spec", {}).get("podCIDRs", [])]
        ips = [a["address"] for n in nodes for a in n.get("status", {}).get("addresses", [])
               if a["type"] == "InternalIP"]
        return m.node_sources(cidrs, ips) if cidrs or ips else m.K3D_NODE_SOURCES

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

    def open_prometheus(self, run_dir: Path) -> None:
        """Prometheus has no host mapping: the harness reaches it through an authenticated port-forward."""
        port = free_port()
        argv = ["kubectl", *self.kube_args, "port-forward", "-n", m.MONITORING_NAMESPACE, PROMETHEUS_SERVICE,
                f"{port}:{PROMETHEUS_SERVICE_PORT}", "--address", LOOPBACK]
        self.prometheus_url = f"http://{LOOPBACK}:{port}"
        if self.plan:
            self.runner.note(f"keep running until the end: {' '.join(argv)}")
            return
        # The virtualenv's kubectl first, as for every other command (SubprocessRunner), activated or not.
        self._port_forward = ManagedProcess("prometheus-port-forward", argv, run_dir / "logs" / "port-forward.log",
                                            env={"PATH": search_path()})
        # A client-side relay, not part of the stack: it ends with the harness even under --keep-stack
        # (which skips stop()), so it is also stopped at interpreter exit.
        atexit.register(self.close_prometheus)
        self._port_forward.start()
        self._port_forward.wait_ready(HttpProbe(f"{self.prometheus_url}/-/ready"), PORT_FORWARD_READY_S)

    def detach_prometheus(self) -> ManagedProcess | None:
        """Hand the port-forward to the caller, which then owns it (`matchlab up` records it: it outlives `up`)."""
        forward, self._port_forward = self._port_forward, None
        atexit.unregister(self.close_prometheus)
        return forward

    def close_prometheus(self) -> None:
        if self._port_forward is not None:
            self._port_forward.stop()
            self._port_forward = None
            if self.keep:
                log.warning("--keep-stack: Prometheus has no host mapping; reach it with `kubectl %s port-forward -n %s "
                            "%s 9090:%d`", " ".join(self.kube_args), m.MONITORING_NAMESPACE, PROMETHEUS_SERVICE,
                            PROMETHEUS_SERVICE_PORT)

    def endpoints(self, topology: Topology) -> Endpoints:
        h, p = url_host(self.host()), m.HOST_PORTS
        shards = topology.shards
        return Endpoints(
            shards={s: f"http://{h}:{p[f'me-shard-{s}']}" for s in shards},
            shard_metrics={s: f"http://{h}:{p[f'me-shard-{s}-metrics']}/metrics" for s in shards},
            gateway=f"http://{h}:{p['edge-gateway']}" if topology.has_gateway else None,
            gateway_metrics=None,
            prometheus=self.prometheus_url,
            broker=f"{h}:{p['redpanda-external']}",
            grafana=f"http://{h}:{p['grafana']}",
            admin_token=self.admin_token,
        )

    # operations ---------------------------------------------------------------------
    def stop(self) -> None:
        self.close_prometheus()
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

    def run_load_in_cluster(self, load: ClusterLoad, start_at: float | None = None) -> LoadResult:
        """Run one load phase as an Indexed Job, collect every worker's measurements and merge them."""
        return merged_result(self.run_load_jobs([load], start_at), load.profile)

    def run_load_jobs(self, loads: list[ClusterLoad], start_at: float | None = None) -> list[dict]:
        """Run Indexed Jobs side by side from one start time; every worker's measurements, Job after Job.

        Several Jobs serve a phase that mixes flows (e.g. the ASR's flow plus probe traffic), each at its
        share of the rate. Every Job is deleted afterwards, whatever happened.
        """
        ns = m.APP_NAMESPACE
        start_at = time.time() + START_LEAD_S if start_at is None else start_at
        try:
            for load in loads:
                self.runner.note(f"in-cluster load {load.name}: Indexed Job of {load.workers} workers, worker i "
                                 f"sending slots i, i+{load.workers}, ... of one schedule (seed {load.seed}), all "
                                 f"starting in {max(0.0, start_at - time.time()):.0f} s")
                self.kubectl("delete", "job", load.name, "-n", ns, "--ignore-not-found", "--wait=true")
                self.apply([load_job(load, start_at, self.registry(), self.run_id)], ns)
            return [part for load in loads for part in self._collect_job(load)]
        finally:
            for load in loads:
                self.kubectl("delete", "job", load.name, "-n", ns, "--ignore-not-found", "--wait=false", check=False)

    def _collect_job(self, load: ClusterLoad) -> list[dict]:
        """Wait for the Job; each worker's measurements from its log (a failed Job: its workers' log tails)."""
        state = wait_until(lambda: self.job_state(load.name), load.timeout_s, f"job/{load.name} to finish",
                           interval=POLL_S)
        parts, logs = [], []
        for index in range(load.workers):
            log_text = self.kubectl("logs", "-l", f"batch.kubernetes.io/job-name={load.name},"
                                    f"{COMPLETION_INDEX}={index}", "-n", m.APP_NAMESPACE, "--tail=-1",
                                    check=state != "Failed")
            logs.append(log_text)
            if state != "Failed" and not self.plan:
                parts.append(read_result_lines(log_text, f"worker {index} of job/{load.name}"))
        if state == "Failed":
            tails = "\n".join(f"--- worker {i}:\n" + "\n".join(t.splitlines()[-15:]) for i, t in enumerate(logs))
            raise CommandError(f"in-cluster load job/{load.name} failed:\n{tails}")
        return parts

    def load_driver(self):
        """With ``load_from="cluster"``, the driver that runs the experiments' load phases as Jobs (else None)."""
        if self.load_from != "cluster":
            return None
        from matchlab.k8s.load_driver import ClusterLoadDriver

        return ClusterLoadDriver(self)

    def processes(self) -> dict:
        return {}  # the services run in pods, not as this machine's processes

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
        self.scale(workload, self.replicas_of(name))
        self.kubectl("rollout", "status", workload.ref, "-n", workload.namespace, f"--timeout={WAIT_TIMEOUT}")

    def replicas_of(self, name: str) -> int:
        """The pods a workload runs when up, as its manifest says (the charts' workloads: one)."""
        spec = next((s for s in app_services(Topology.MULTI) if s.name == name), None)
        return m.replicas(spec, self.gateway_replicas) if spec is not None else 1

    def log_tails(self) -> dict[str, str]:
        return {spec.name: self.log_tail(spec) for spec in app_services(Topology.MULTI)}

    def log_tail(self, spec: ServiceSpec) -> str:
        """A Deployment's log tail; of every pod, each line prefixed with its pod, where it runs several."""
        replicas = m.replicas(spec, self.gateway_replicas)
        if replicas == 1:
            source = [f"deployment/{spec.name}"]
        else:
            selector = ",".join(f"{k}={v}" for k, v in spec.labels.items())
            source = ["-l", selector, "--prefix", f"--max-log-requests={replicas}"]
        return self.kubectl("logs", *source, "-n", m.APP_NAMESPACE, "--tail=40", check=False)

    def facts(self) -> dict[str, str]:
        facts = {"backend": f"{self.name} ({'plan only' if self.plan else 'cluster'})"}
        if self.gateway_replicas > 1:
            facts["gateway"] = f"{self.gateway_replicas} replicas of the edge-gateway Deployment, each pod scraped"
        if self.load_from == "cluster":
            pods = f"{self.load_workers} pods" if self.load_workers else "one pod per agent node"
            facts["load"] = (f"in-cluster Indexed Jobs of {pods} per phase, one schedule split between them; "
                             "match-rate phases run at the calibrated order rate, not steered")
        return facts


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
                 expose_on: str = LOOPBACK, load_from: str = "host", load_workers: int | None = None,
                 gateway_replicas: int = 1) -> None:
        super().__init__(runner, plan, keep, load_from, load_workers, gateway_replicas)
        self.created_cluster = False
        try:
            self.expose_on = str(ipaddress.ip_address(expose_on))
        except ValueError:
            raise UsageError(f"--expose-on wants an IP address of this machine, got {expose_on!r}") from None
        warning = exposure_warning(self.expose_on)
        if warning:
            log.warning(warning)

    def port_mappings(self) -> list[str]:
        """``ADDRESS:HOSTPORT:NODEPORT@loadbalancer`` for every mapping: never Docker's all-interfaces default."""
        return [f"{url_host(self.expose_on)}:{host}:{m.NODE_PORTS[name]}@loadbalancer"
                for name, host in m.HOST_PORTS.items()]

    def host(self) -> str:
        """Where the harness connects: the bound address (loopback when bound to every interface)."""
        return LOOPBACK if ipaddress.ip_address(self.expose_on).is_unspecified else self.expose_on

    def check_reused_mappings(self) -> None:
        """A reused cluster keeps the mappings it was created with: refuse ones bound elsewhere."""
        out = self.runner.run(["docker", "port", f"k3d-{CLUSTER}-serverlb"], check=False)
        ours = {str(p) for p in m.NODE_PORTS.values()}
        bound = {line.rsplit(" -> ", 1)[1].rsplit(":", 1)[0].strip("[]") for line in out.splitlines()
                 if " -> " in line and line.split("/", 1)[0].strip() in ours}
        wrong = sorted(a for a in bound if a != self.expose_on)
        if wrong:
            raise UsageError(
                f"the existing k3d cluster {CLUSTER!r} maps its ports on {', '.join(wrong)}, not {self.expose_on}: "
                f"delete it (`k3d cluster delete {CLUSTER}`) so this run recreates it, or pass --expose-on accordingly")

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
        if self.cluster_exists():
            self.check_reused_mappings()
        else:
            self.runner.note(f"port mappings bind {self.expose_on} only")
            ports = [arg for mapping in self.port_mappings() for arg in ("-p", mapping)]
            self.created_cluster = True  # before: a half-created cluster is deleted too
            self.on_create()
            # The Kubernetes API too: k3d would bind it on 0.0.0.0; only this machine's kubeconfig needs it.
            self.runner.run(["k3d", "cluster", "create", CLUSTER, "--servers", "1", "--agents", str(AGENTS),
                             "--api-port", f"{LOOPBACK}:random",
                             "--k3s-arg", "--disable=traefik@server:0", *ports, "--wait",
                             "--kubeconfig-update-default=false", "--kubeconfig-switch-context=false"])
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

    def facts(self) -> dict[str, str]:
        return {**super().facts(), "port mappings": f"bound on {self.expose_on}"}

    def teardown_cluster(self) -> None:
        if self.created_cluster and not self.keep:
            self.runner.run(["k3d", "cluster", "delete", CLUSTER], check=False)
            self.created_cluster = False


class ExistingClusterBackend(KubernetesBackend):
    """A cluster the user already has: never created or deleted here."""

    name = "k8s"

    def __init__(self, context: str, image_registry: str, runner: CommandRunner | None = None, plan: bool = False,
                 keep: bool = False, load_from: str = "host", load_workers: int | None = None,
                 gateway_replicas: int = 1) -> None:
        super().__init__(runner, plan, keep, load_from, load_workers, gateway_replicas)
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
