"""The Kubernetes backends: a k3d cluster the run creates (or reuses), or an existing cluster.

A ``KubernetesBackend`` composes the pieces, each in its own module, all issuing their commands through
one ``Kube`` (kubectl and helm over the run's ``CommandRunner``, so ``--plan`` prints exactly what a run
would do):

1. check prerequisites (Docker engine, k3d, helm, kubectl) - one message for all that is missing;
2. the cluster provider (``cluster``: k3d or existing) creates or finds the cluster;
3. the images are built by ``matchlab.images.build_images`` (only where their content changed) and the
   provider delivers those very tags (k3d: ``k3d image import`` and a check of every node; existing:
   pushed to ``--image-registry``);
4. ``deploy`` applies the manifests (the Deployments run those tags), installs the charts, waits;
5. a ``port_forward`` to Prometheus on 127.0.0.1 (queries and the load generator's remote write);
6. with ``load_from="cluster"`` the load phases run as Indexed Jobs (``jobs``) through the backend's
   ``load_driver()``; ``faults`` pause the broker and kill or restart services.

Load reaches the gateway and shards through the k3d load balancer's port mappings (NodePorts), never
``kubectl port-forward``. Teardown deletes the cluster only if this run created it (and ``--keep-stack``
is off); on an existing cluster only the namespaces this run created are deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from matchlab.errors import ConfigError
from matchlab.images.build import build_images, planned_tags
from matchlab.k8s import deploy
from matchlab.k8s import manifests as m
from matchlab.k8s.cluster import CLUSTER, LOOPBACK, ClusterProvider, ExistingCluster, K3dCluster, url_host
from matchlab.k8s.commands import CommandRunner, RecordingRunner, SubprocessRunner
from matchlab.k8s.faults import ClusterFaults
from matchlab.k8s.jobs import ClusterJobs
from matchlab.k8s.kube import Kube
from matchlab.k8s.load_job import ClusterLoad
from matchlab.k8s.port_forward import PortForward
from matchlab.k8s.prereq import check_prerequisites
from matchlab.loadgen.results import LoadResult
from matchlab.stack.process import ManagedProcess, stop_after_failure
from matchlab.stack.spec import Endpoints, Topology

__all__ = ["CLUSTER", "LOOPBACK", "ExistingClusterBackend", "K3dBackend", "KubernetesBackend"]

log = logging.getLogger(__name__)

APP_IMAGES = ("shard", "gateway")
PROMETHEUS_SERVICE = "svc/prometheus-server"
PROMETHEUS_SERVICE_PORT = 80


class KubernetesBackend:
    """The steps every cluster takes; the provider decides the cluster's lifecycle, image delivery and address."""

    name = "k8s"

    def __init__(self, cluster: ClusterProvider, runner: CommandRunner | None = None, plan: bool = False,
                 keep: bool = False, load_from: str = "host", load_workers: int | None = None,
                 gateway_replicas: int = 1) -> None:
        if load_from not in ("host", "cluster"):
            raise ConfigError(f"load_from must be 'host' or 'cluster', got {load_from!r}")
        self.cluster = cluster
        self.plan, self.keep, self.load_from, self.load_workers = plan, keep, load_from, load_workers
        self.runner: CommandRunner = runner or (RecordingRunner() if plan else SubprocessRunner())
        self.kube = Kube(self.runner)
        self.faults = ClusterFaults(self.kube, gateway_replicas)
        self.created_namespaces: list[str] = []
        self.run_id = ""
        self.admin_token = ""
        self.prometheus_url = ""
        self.image_tags: dict[str, str] = {}  # Dockerfile target -> the tag this run deploys
        self._port_forward: PortForward | None = None
        # Called just before this backend creates a cluster or namespaces: `matchlab up` records them then, so
        # `matchlab down` deletes them even after an `up` killed half-way.
        self.on_create: Callable[[], None] = lambda: None

    @property
    def gateway_replicas(self) -> int:
        """--gateway-workers: the edge-gateway Deployment's replicas (a restarted gateway comes back with as many)."""
        return self.faults.gateway_replicas

    @gateway_replicas.setter
    def gateway_replicas(self, replicas: int) -> None:
        self.faults.gateway_replicas = replicas

    @property
    def kube_args(self) -> list[str]:
        return self.kube.args

    @kube_args.setter
    def kube_args(self, args: list[str]) -> None:
        self.kube.args = list(args)

    def kubectl(self, *args: str, input_text: str | None = None, check: bool = True) -> str:
        return self.kube.kubectl(*args, input_text=input_text, check=check)

    def image_targets(self) -> tuple[str, ...]:
        """The images the cluster runs; the load generator's only when load runs in the cluster."""
        return (*APP_IMAGES, "loadgen") if self.load_from == "cluster" else APP_IMAGES

    def tags(self) -> dict[str, str]:
        """Target -> the tag deployed: what this run built, else what a build of this tree produces."""
        if not self.image_tags:
            self.image_tags = planned_tags(self.image_targets())
        return self.image_tags

    # -- bring up ----------------------------------------------------------------

    def start(self, topology: Topology, run_dir: Path) -> Endpoints:
        self.run_id = run_dir.parent.name or run_dir.name
        if self.plan:
            self.runner.note(f"check prerequisites: Docker engine, {', '.join(self.cluster.tools())}")
        else:
            check_prerequisites(need_docker=True, tools=self.cluster.tools())
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.prepare_cluster(run_dir)
            self.build_images()
            self.cluster.deliver_images(self.kube, list(self.tags().values()), self.plan)
            deployed = deploy.apply_stack(self.kube, registry=self.cluster.registry(), run_id=self.run_id,
                                          host=url_host(self.cluster.host(self.kube)),
                                          gateway_replicas=self.gateway_replicas, images=self.tags(),
                                          on_create=self._namespaces_created)
            self.admin_token = deployed.admin_token
            deploy.install_charts(self.kube)
            deploy.wait_ready(self.kube)
            self.open_prometheus(run_dir)
        except BaseException:
            stop_after_failure(self.stop, "the cluster stack")
            raise
        return self.endpoints(topology)

    def prepare_cluster(self, run_dir: Path) -> None:
        self.cluster.create(self.kube, run_dir, self.on_create)

    def _namespaces_created(self, created: list[str]) -> None:
        self.created_namespaces = created
        self.on_create()

    def build_images(self) -> None:
        """Through the one build function every caller uses; the tags built are the tags deployed."""
        if self.plan:
            self.runner.note(f"build images (matchlab images, Docker SDK, only where their content changed): "
                             f"{' '.join(self.tags().values())}")
            return
        built = build_images(self.image_targets(), self.docker_client())
        self.image_tags = {target: image.tag for target, image in built.items()}

    def docker_client(self):
        from matchlab.images.engine import engine_client

        return engine_client()

    def open_prometheus(self, run_dir: Path) -> None:
        """Prometheus has no host mapping: the harness reaches it through an authenticated port-forward."""
        self._port_forward = PortForward(self.kube, m.MONITORING_NAMESPACE, PROMETHEUS_SERVICE,
                                         PROMETHEUS_SERVICE_PORT, run_dir / "logs" / "port-forward.log",
                                         plan=self.plan)
        self.prometheus_url = self._port_forward.open()

    def detach_prometheus(self) -> ManagedProcess | None:
        """Hand the port-forward to the caller, which then owns it (`matchlab up` records it: it outlives `up`)."""
        forward, self._port_forward = self._port_forward, None
        return forward.detach() if forward is not None else None

    def close_prometheus(self) -> None:
        if self._port_forward is not None:
            self._port_forward.close()
            self._port_forward = None
            if self.keep:
                log.warning("--keep-stack: Prometheus has no host mapping; reach it with `kubectl %s port-forward -n %s "
                            "%s 9090:%d`", " ".join(self.kube.args), m.MONITORING_NAMESPACE, PROMETHEUS_SERVICE,
                            PROMETHEUS_SERVICE_PORT)

    def endpoints(self, topology: Topology) -> Endpoints:
        h, p = url_host(self.cluster.host(self.kube)), m.HOST_PORTS
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

    # -- operations ----------------------------------------------------------------

    def stop(self) -> None:
        self.close_prometheus()
        if self.keep:
            return
        for ns in reversed(self.created_namespaces):
            self.kube.kubectl("delete", "namespace", ns, "--ignore-not-found", "--wait=false", check=False)
        self.created_namespaces = []
        self.cluster.delete(self.kube)

    def jobs(self) -> ClusterJobs:
        return ClusterJobs(self.kube, self.cluster.registry(), self.run_id, self.tags().get("loadgen"), self.plan)

    def default_load_workers(self) -> int:
        """One load worker per agent (k3d), or per node that takes ordinary pods."""
        return self.cluster.default_load_workers() or self.jobs().schedulable_nodes()

    def run_load_in_cluster(self, load: ClusterLoad, start_at: float | None = None) -> LoadResult:
        return self.jobs().run_one(load, start_at)

    def run_load_jobs(self, loads: list[ClusterLoad], start_at: float | None = None) -> list[dict]:
        return self.jobs().run(loads, start_at)

    def load_driver(self):
        """With ``load_from="cluster"``, the driver that runs the experiments' load phases as Jobs (else None)."""
        if self.load_from != "cluster":
            return None
        from matchlab.k8s.load_driver import ClusterLoadDriver

        return ClusterLoadDriver(self)

    def processes(self) -> dict:
        return {}  # the services run in pods, not as this machine's processes

    def pause_broker(self) -> None:
        self.faults.pause_broker()

    def resume_broker(self) -> None:
        self.faults.resume_broker()

    def kill_service(self, name: str) -> None:
        self.faults.kill_service(name)

    def restart_service(self, name: str) -> None:
        self.faults.restart_service(name)

    def log_tails(self) -> dict[str, str]:
        return self.faults.log_tails()

    def facts(self) -> dict[str, str]:
        facts = {"backend": f"{self.name} ({'plan only' if self.plan else 'cluster'})"}
        if self.gateway_replicas > 1:
            facts["gateway"] = f"{self.gateway_replicas} replicas of the edge-gateway Deployment, each pod scraped"
        if self.load_from == "cluster":
            pods = f"{self.load_workers} pods" if self.load_workers else "one pod per agent node"
            facts["load"] = (f"in-cluster Indexed Jobs of {pods} per phase, one schedule split between them; "
                             "match-rate phases run at the calibrated order rate, not steered")
        if self.image_tags:
            facts["images"] = ", ".join(self.image_tags.values())
        return facts


class K3dBackend(KubernetesBackend):
    name = "k3d"

    def __init__(self, runner: CommandRunner | None = None, plan: bool = False, keep: bool = False,
                 expose_on: str = LOOPBACK, load_from: str = "host", load_workers: int | None = None,
                 gateway_replicas: int = 1) -> None:
        super().__init__(K3dCluster(expose_on), runner, plan, keep, load_from, load_workers, gateway_replicas)

    @property
    def expose_on(self) -> str:
        return self.cluster.expose_on

    @property
    def created_cluster(self) -> bool:
        return self.cluster.created

    @created_cluster.setter
    def created_cluster(self, created: bool) -> None:
        self.cluster.created = created

    def facts(self) -> dict[str, str]:
        return {**super().facts(), "port mappings": f"bound on {self.expose_on}"}


class ExistingClusterBackend(KubernetesBackend):
    """A cluster the user already has: never created or deleted here."""

    name = "k8s"

    def __init__(self, context: str, image_registry: str, runner: CommandRunner | None = None, plan: bool = False,
                 keep: bool = False, load_from: str = "host", load_workers: int | None = None,
                 gateway_replicas: int = 1) -> None:
        super().__init__(ExistingCluster(context, image_registry), runner, plan, keep, load_from, load_workers,
                         gateway_replicas)
        self.kube.args = ["--context", context]
