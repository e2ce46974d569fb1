"""Faults on a cluster, meaning what they mean on the local backend: a killed service stays down until
restarted (its Deployment must not replace it), a restarted shard replays its journal (a volume claim),
and the broker's outage keeps its data (its StatefulSet's volume claim). Also each workload's log tail."""

from __future__ import annotations

import json
from dataclasses import dataclass

from matchlab.errors import ConfigError
from matchlab.k8s import kube as kube_module
from matchlab.k8s import manifests as m
from matchlab.k8s.helm_values import CHART_WORKLOADS
from matchlab.k8s.kube import WAIT_TIMEOUT, Kube
from matchlab.stack.spec import Role, ServiceSpec, Topology, app_services, relay_spec
from matchlab.waiting import wait_until

LOG_TAIL_LINES = 40


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
    relays = {relay_spec(s).name: s.name for s in app_services(Topology.MULTI) if s.role is Role.SHARD}
    if name in relays:
        raise ConfigError(f"{name} is a container of {relays[name]}'s pod on Kubernetes, not a workload of its own: "
                          f"kill or restart {relays[name]} (its pod, both containers)")
    raise ConfigError(f"no service named {name!r}; known: {known}")


class ClusterFaults:
    def __init__(self, kube: Kube, gateway_replicas: int = 1) -> None:
        self.kube, self.gateway_replicas = kube, gateway_replicas

    def pods(self, workload: Workload) -> list[tuple[str, bool]]:
        """(name, Ready) of every pod of the workload that still exists."""
        out = self.kube.kubectl("get", "pods", "-l", workload.selector, "-n", workload.namespace, "-o", "json")
        items = json.loads(out)["items"] if out.strip() else []  # a recorded plan answers nothing: no pods
        return [(p["metadata"]["name"], any(c["type"] == "Ready" and c["status"] == "True"
                                           for c in p.get("status", {}).get("conditions", []))) for p in items]

    def wait_pods(self, workload: Workload, until: str) -> None:
        """Until no pod of the workload is Ready (``until="none ready"``) or none is left (``"none left"``)."""
        def done() -> bool:
            pods = self.pods(workload)
            return not (pods if until == "none left" else [name for name, ready in pods if ready])

        wait_until(done, kube_module.WAIT_TIMEOUT_S, f"{until}: pods {workload.selector} in {workload.namespace}",
                   interval=kube_module.POLL_S)

    def scale(self, workload: Workload, replicas: int) -> None:
        self.kube.kubectl("scale", workload.ref, f"--replicas={replicas}", "-n", workload.namespace)

    def pause_broker(self) -> None:
        """Scale Redpanda to 0 until its pod is gone (its volume claim keeps topics and data)."""
        self.scale(BROKER, 0)
        self.wait_pods(BROKER, "none left")

    def resume_broker(self) -> None:
        self.scale(BROKER, 1)
        self.kube.kubectl("rollout", "status", BROKER.ref, "-n", BROKER.namespace, f"--timeout={WAIT_TIMEOUT}")

    def kill_service(self, name: str) -> None:
        """Crash it and keep it down: scale to 0 first (nothing replaces it), then delete its pods at once."""
        workload = workload_of(name)
        self.scale(workload, 0)
        self.kube.kubectl("delete", "pod", "-l", workload.selector, "-n", workload.namespace, "--grace-period=0",
                          "--force", "--ignore-not-found")
        self.wait_pods(workload, "none ready")

    def restart_service(self, name: str) -> None:
        """Stop it (if running) until no pod is left, start one again and wait until it is Ready."""
        workload = workload_of(name)
        self.scale(workload, 0)
        self.wait_pods(workload, "none left")  # the journal's volume is never shared by two pods
        self.scale(workload, self.replicas_of(name))
        self.kube.kubectl("rollout", "status", workload.ref, "-n", workload.namespace, f"--timeout={WAIT_TIMEOUT}")

    def replicas_of(self, name: str) -> int:
        """The pods a workload runs when up, as its manifest says (the charts' workloads: one)."""
        spec = next((s for s in app_services(Topology.MULTI) if s.name == name), None)
        return m.replicas(spec, self.gateway_replicas) if spec is not None else 1

    def log_tails(self) -> dict[str, str]:
        tails = {}
        for spec in app_services(Topology.MULTI):
            tails[spec.name] = self.log_tail(spec)
            if spec.role is Role.SHARD:  # its relay, the pod's second container
                tails[relay_spec(spec).name] = self.log_tail(spec, "event-relay")
        return tails

    def log_tail(self, spec: ServiceSpec, container: str | None = None) -> str:
        """A Deployment's log tail (of ``container``, by default the service's own); of every pod, each line
        prefixed with its pod, where it runs several."""
        replicas = m.replicas(spec, self.gateway_replicas)
        if replicas == 1:
            source = [f"deployment/{spec.name}", "-c", container or spec.name]
        else:
            selector = ",".join(f"{k}={v}" for k, v in spec.labels.items())
            source = ["-l", selector, "--prefix", f"--max-log-requests={replicas}"]
        return self.kube.kubectl("logs", *source, "-n", m.APP_NAMESPACE, f"--tail={LOG_TAIL_LINES}", check=False)
