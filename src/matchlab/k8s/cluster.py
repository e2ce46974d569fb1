"""Cluster providers: where the cluster comes from, how images reach its nodes, and what goes at the end.

``K3dCluster`` creates ``matching-engine-exp`` (1 server, 3 agents, Traefik off, host ports mapped through
the load balancer on 127.0.0.1 - or ``--expose-on ADDRESS`` - ``--wait``) unless it exists (then its
mappings must bind that same address), points kubectl at it with a private kubeconfig, imports the images
with ``k3d image import`` and checks every node has them, and deletes the cluster only if it created it.
``ExistingCluster`` uses a kubeconfig context as it is, pushes the images to ``--image-registry`` and never
creates or deletes a cluster. Every command goes through the ``Kube``'s runner.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from matchlab.errors import PrerequisiteError, UsageError
from matchlab.k8s import manifests as m
from matchlab.k8s.kube import Kube

log = logging.getLogger(__name__)

CLUSTER = "matching-engine-exp"
AGENTS = 3
LOOPBACK = "127.0.0.1"


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


class ClusterProvider(Protocol):
    created: bool  # this run created the cluster (so it may delete it)

    def tools(self) -> tuple[str, ...]: ...

    def create(self, kube: Kube, run_dir: Path, on_create: Callable[[], None]) -> None:
        """Create the cluster or find it, and point ``kube`` at it (``on_create`` just before creating)."""
        ...

    def delete(self, kube: Kube) -> None:
        """Delete what ``create`` created, nothing else."""
        ...

    def deliver_images(self, kube: Kube, tags: list[str], plan: bool) -> None:
        """Make the images the run built available to every node."""
        ...

    def registry(self) -> str: ...

    def host(self, kube: Kube) -> str:
        """Where the harness connects to the cluster's mapped ports."""
        ...

    def default_load_workers(self) -> int | None:
        """Load pods per phase when --load-workers is not given (None: one per schedulable node)."""
        ...

    def ledger_fields(self) -> dict:
        """What `matchlab up` records so a later process can reattach (matchlab.k8s.ledger)."""
        ...


class K3dCluster:
    def __init__(self, expose_on: str = LOOPBACK) -> None:
        try:
            self.expose_on = str(ipaddress.ip_address(expose_on))
        except ValueError:
            raise UsageError(f"--expose-on wants an IP address of this machine, got {expose_on!r}") from None
        warning = exposure_warning(self.expose_on)
        if warning:
            log.warning(warning)
        self.created = False

    def tools(self) -> tuple[str, ...]:
        return ("k3d", "helm", "kubectl")

    def port_mappings(self) -> list[str]:
        """``ADDRESS:HOSTPORT:NODEPORT@loadbalancer`` for every mapping: never Docker's all-interfaces default."""
        return [f"{url_host(self.expose_on)}:{host}:{m.NODE_PORTS[name]}@loadbalancer"
                for name, host in m.HOST_PORTS.items()]

    def host(self, kube: Kube) -> str:
        """The bound address (loopback when bound to every interface)."""
        return LOOPBACK if ipaddress.ip_address(self.expose_on).is_unspecified else self.expose_on

    def exists(self, kube: Kube) -> bool:
        out = kube.runner.run(["k3d", "cluster", "list", "-o", "json"], check=False)
        try:
            return any(c.get("name") == CLUSTER for c in json.loads(out or "[]"))
        except ValueError:
            return False

    def check_reused_mappings(self, kube: Kube) -> None:
        """A reused cluster keeps the mappings it was created with: refuse ones bound elsewhere."""
        out = kube.runner.run(["docker", "port", f"k3d-{CLUSTER}-serverlb"], check=False)
        ours = {str(p) for p in m.NODE_PORTS.values()}
        bound = {line.rsplit(" -> ", 1)[1].rsplit(":", 1)[0].strip("[]") for line in out.splitlines()
                 if " -> " in line and line.split("/", 1)[0].strip() in ours}
        wrong = sorted(a for a in bound if a != self.expose_on)
        if wrong:
            raise UsageError(
                f"the existing k3d cluster {CLUSTER!r} maps its ports on {', '.join(wrong)}, not {self.expose_on}: "
                f"delete it (`k3d cluster delete {CLUSTER}`) so this run recreates it, or pass --expose-on accordingly")

    def create(self, kube: Kube, run_dir: Path, on_create: Callable[[], None]) -> None:
        runner = kube.runner
        if self.exists(kube):
            self.check_reused_mappings(kube)
        else:
            runner.note(f"port mappings bind {self.expose_on} only")
            ports = [arg for mapping in self.port_mappings() for arg in ("-p", mapping)]
            self.created = True  # before: a half-created cluster is deleted too
            on_create()
            # The Kubernetes API too: k3d would bind it on 0.0.0.0; only this machine's kubeconfig needs it.
            runner.run(["k3d", "cluster", "create", CLUSTER, "--servers", "1", "--agents", str(AGENTS),
                        "--api-port", f"{LOOPBACK}:random", "--k3s-arg", "--disable=traefik@server:0", *ports,
                        "--wait", "--kubeconfig-update-default=false", "--kubeconfig-switch-context=false"])
        kubeconfig = run_dir / "kubeconfig"
        config = runner.run(["k3d", "kubeconfig", "get", CLUSTER])
        if config:  # a recorded plan answers nothing: no file to write
            kubeconfig.write_text(config)
            kubeconfig.chmod(0o600)
        kube.args = ["--kubeconfig", str(kubeconfig)]

    def deliver_images(self, kube: Kube, tags: list[str], plan: bool) -> None:
        kube.runner.run(["k3d", "image", "import", *tags, "--cluster", CLUSTER])
        nodes = [f"k3d-{CLUSTER}-server-0", *(f"k3d-{CLUSTER}-agent-{i}" for i in range(AGENTS))]
        for node in nodes:
            listed = kube.runner.run(["docker", "exec", node, "crictl", "images", "-o", "json"])
            if plan:
                continue
            on_node = {t for img in json.loads(listed).get("images", []) for t in img.get("repoTags", [])}
            missing = [tag for tag in tags if not any(t.endswith(tag) for t in on_node)]
            if missing:
                raise PrerequisiteError(f"images {missing} are not on node {node} after `k3d image import`")

    def registry(self) -> str:
        return ""

    def delete(self, kube: Kube) -> None:
        if self.created:
            kube.runner.run(["k3d", "cluster", "delete", CLUSTER], check=False)
            self.created = False

    def default_load_workers(self) -> int:
        return AGENTS

    def ledger_fields(self) -> dict:
        return {"created_cluster": self.created, "expose_on": self.expose_on}


class ExistingCluster:
    """A cluster the user already has: never created or deleted here."""

    created = False

    def __init__(self, context: str, image_registry: str) -> None:
        self.context = context
        self.image_registry = image_registry.rstrip("/")
        self._host = ""

    def tools(self) -> tuple[str, ...]:
        return ("helm", "kubectl")

    def create(self, kube: Kube, run_dir: Path, on_create: Callable[[], None]) -> None:
        kube.args = ["--context", self.context]
        kube.kubectl("cluster-info")

    def delete(self, kube: Kube) -> None:
        """Never: the cluster is the user's."""

    def registry(self) -> str:
        return self.image_registry

    def deliver_images(self, kube: Kube, tags: list[str], plan: bool) -> None:
        for tag in tags:
            remote = f"{self.image_registry}/{tag}"
            if plan:
                kube.runner.note(f"docker SDK: tag {tag} {remote} and push it")
                continue
            from matchlab.images.engine import engine_client

            client = engine_client()
            repository, version = remote.rsplit(":", 1)
            client.images.get(tag).tag(repository, version)
            for line in client.images.push(remote, stream=True, decode=True):
                if "error" in line:
                    raise PrerequisiteError(f"pushing {remote} failed: {line['error']}")

    def host(self, kube: Kube) -> str:
        if not self._host:
            out = kube.kubectl("get", "nodes", "-o",
                               "jsonpath={.items[0].status.addresses[?(@.type=='InternalIP')].address}")
            self._host = out.strip() or LOOPBACK
        return self._host

    def default_load_workers(self) -> None:
        return None

    def ledger_fields(self) -> dict:
        return {"context": self.context, "image_registry": self.image_registry}
