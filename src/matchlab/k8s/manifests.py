"""Kubernetes manifests, generated from the same service specs as the local stack.

One source of truth: shards and gateway come from ``stack.spec.app_services``
(identity, settings, labels), so the three shard Deployments cannot drift
apart. ``python -m matchlab.k8s.manifests`` writes them under ``k8s/``
(``--check`` verifies the committed files are current); the Helm values live
in ``helm_values``.

Names, labels, annotations, resources and probes follow docs/internals/design.md §2. A
shard's pod has two containers sharing its journal volume: the shard and its
event relay (``matchlab.relay``, the same image), each with its own probes and
resources; the relay's metrics port is scraped by a job of its own
(``helm_values``), as the pod annotation names the shard's. Only
pods carry the ``prometheus.io/*`` annotations: the Prometheus chart's
default ``kubernetes-pods`` job honours them, so no extra scrape job (and no
duplicate targets). Services are NodePorts on fixed ports, which the k3d
load balancer maps to host ports on 127.0.0.1 (so load never goes through
port-forward). Prometheus is not among them: it stays inside the cluster.

NetworkPolicies (``network_policies``) deny ingress to both namespaces except
what the experiment needs: shards from the gateway, Prometheus and the
harness' port mappings; Redpanda from the shards, the topics Job and the
harness' event reader; Prometheus from Grafana only (the harness reaches it
through an authenticated ``kubectl port-forward``, which no policy sees).
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from matchlab.errors import ConfigError
from matchlab.images.targets import GATEWAY_IMAGE, SHARD_IMAGE
from matchlab.k8s.layout import (  # noqa: F401 - the manifests' names for the cluster's fixed facts
    APP_NAMESPACE,
    HOST_PORTS,
    KAFKA_EXTERNAL_PORT,
    MONITORING_NAMESPACE,
    NODE_PORTS,
    RELAY_PORT_NAME,
    cpu_quantity,
    resources,
)
from matchlab.stack.spec import Role, ServiceSpec, Topology, Wiring, app_services, relay_spec
from matchlab.topology import APP_HTTP_PORT, APP_METRICS_PORT, KAFKA_PORT, PARTITIONS, RELAY_METRICS_PORT, TOPICS

K8S_DIR = Path(__file__).resolve().parents[3] / "k8s"
REDPANDA_IMAGE = "docker.redpanda.com/redpandadata/redpanda:v24.2.7"
REDPANDA_ADMIN_PORT = 9644
REDPANDA_ADVERTISED = f"redpanda-0.redpanda.{APP_NAMESPACE}.svc.cluster.local:{KAFKA_PORT}"
ADMIN_SECRET = "me-admin-token"  # generated per cluster by the backend; never a literal here
ADMIN_SECRET_KEY = "token"
RUN_LABEL = "matchlab.run"  # namespaces this harness creates carry it; only those are ever deleted

RESOURCES = {Role.SHARD: resources("shard"), Role.RELAY: resources("relay"), Role.GATEWAY: resources("gateway")}
JOURNAL_STORAGE = "1Gi"  # WAL_SIZE_MB is 64
REDPANDA_RESOURCES = resources("broker")


def namespace(name: str, run_id: str | None = None) -> dict:
    labels = {"app.kubernetes.io/part-of": "matching-engine-experiment"}
    if run_id:
        labels[RUN_LABEL] = run_id
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def _probe(path: str, port: int, period: int = 5) -> dict:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": period, "timeoutSeconds": 2, "failureThreshold": 3}


def _pod_wiring(spec: ServiceSpec) -> Wiring:
    return Wiring(
        APP_HTTP_PORT, APP_METRICS_PORT,
        bind_host="0.0.0.0",  # inside the pod network; Services expose it
        kafka_bootstrap=REDPANDA_ADVERTISED, wal_path=Path("/data"),
        shard_urls={s: f"http://me-shard-{s}.{APP_NAMESPACE}.svc.cluster.local:{APP_HTTP_PORT}"
                    for s in spec.shard_symbols} if spec.role is Role.GATEWAY else {},
        relay_metrics_port=RELAY_METRICS_PORT,
    )


def _image(image: str, registry: str) -> dict:
    return {"image": f"{registry.rstrip('/')}/{image}" if registry else image,
            "imagePullPolicy": "IfNotPresent" if registry else "Never"}  # locally built images: Never


def _env(env: dict[str, str]) -> list[dict]:
    return [{"name": k, "value": v} for k, v in sorted(env.items())]


SECURITY = {"runAsNonRoot": True, "allowPrivilegeEscalation": False}
JOURNAL_MOUNT = {"name": "wal", "mountPath": "/data"}


def relay_container(shard: ServiceSpec, image: str, registry: str = "") -> dict:
    """The shard's event relay (from the shard's image): the shard's environment and journal volume, its own
    port, probes and resources.

    No admin token: the relay serves no admin route. Readiness is the journal's, never the broker's: a pod is
    Ready only when every container is, and a broker outage must not take the shard out of its Service.
    """
    spec = relay_spec(shard)
    return {
        "name": "event-relay",
        **_image(image, registry),
        "command": ["python", "-m", spec.module],
        "env": _env(spec.environment(_pod_wiring(shard))),
        "ports": [{"name": RELAY_PORT_NAME, "containerPort": RELAY_METRICS_PORT}],
        "resources": RESOURCES[Role.RELAY],
        "readinessProbe": _probe(spec.ready_path, RELAY_METRICS_PORT),
        "livenessProbe": {**_probe("/health", RELAY_METRICS_PORT, 10), "initialDelaySeconds": 10},
        "volumeMounts": [dict(JOURNAL_MOUNT)],
        "securityContext": dict(SECURITY),
    }


def app_deployment(spec: ServiceSpec, registry: str = "", replicas: int = 1, image: str | None = None) -> dict:
    """``replicas``: the gateway may run several (Prometheus scrapes each pod, every query sums them); a shard
    never does: one matcher per book. ``image``: a built tag (default: the version tag)."""
    if replicas != 1 and spec.role is not Role.GATEWAY:
        raise ConfigError(f"{spec.name} runs as exactly one replica (one matcher per shard), not {replicas}")
    image = image or (SHARD_IMAGE if spec.role is Role.SHARD else GATEWAY_IMAGE)
    token = {"name": "ADMIN_TOKEN", "valueFrom": {"secretKeyRef": {"name": ADMIN_SECRET, "key": ADMIN_SECRET_KEY}}}
    container = {
        "name": spec.name,
        **_image(image, registry),
        "env": _env(spec.environment(_pod_wiring(spec))) + [token],
        "ports": [{"name": "http", "containerPort": APP_HTTP_PORT}, {"name": "metrics", "containerPort": APP_METRICS_PORT}],
        "resources": RESOURCES[spec.role],
        "readinessProbe": _probe(spec.ready_path, APP_HTTP_PORT),
        "securityContext": dict(SECURITY),
    }
    containers, volumes = [container], []
    if spec.role is Role.SHARD:
        container["livenessProbe"] = {**_probe("/health", APP_HTTP_PORT, 10), "initialDelaySeconds": 10}
        container["volumeMounts"] = [dict(JOURNAL_MOUNT)]
        volumes = [{"name": "wal", "persistentVolumeClaim": {"claimName": journal_claim_name(spec)}}]
        containers.append(relay_container(spec, image, registry))
    pod_spec = {"containers": containers, "terminationGracePeriodSeconds": 30}
    if volumes:
        pod_spec["volumes"] = volumes
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": spec.name, "namespace": APP_NAMESPACE, "labels": dict(spec.labels)},
        "spec": {
            "replicas": replicas,
            "strategy": {"type": "Recreate"},  # one matcher per shard, never two
            "selector": {"matchLabels": dict(spec.labels)},
            "template": {
                "metadata": {
                    # `job` as on the local stack (its scrape jobs are named after the app): the chart's
                    # kubernetes-pods job maps pod labels onto targets, which overrides its own job name.
                    "labels": {**spec.labels, "job": spec.labels["app"]},
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(APP_METRICS_PORT),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": pod_spec,
            },
        },
    }


def journal_claim_name(spec: ServiceSpec) -> str:
    return f"wal-{spec.name}"


def journal_claim(spec: ServiceSpec) -> dict:
    """The shard's journal outlives its pod: a killed or restarted shard replays it, as on the local backend.

    No storage class named: the cluster's default (k3s: ``local-path``). ReadWriteOnce with one replica and the
    Recreate strategy: never two matchers on one journal.
    """
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": journal_claim_name(spec), "namespace": APP_NAMESPACE, "labels": dict(spec.labels)},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": JOURNAL_STORAGE}}},
    }


def app_service(spec: ServiceSpec) -> dict:
    ports = [{"name": "http", "port": APP_HTTP_PORT, "targetPort": "http"},
             {"name": "metrics", "port": APP_METRICS_PORT, "targetPort": "metrics"}]
    if spec.name in NODE_PORTS:
        ports[0]["nodePort"] = NODE_PORTS[spec.name]
    if f"{spec.name}-metrics" in NODE_PORTS:
        ports[1]["nodePort"] = NODE_PORTS[f"{spec.name}-metrics"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": spec.name, "namespace": APP_NAMESPACE, "labels": dict(spec.labels)},
        "spec": {"type": "NodePort", "selector": dict(spec.labels), "ports": ports},
    }


def redpanda(external_host: str = "127.0.0.1") -> list[dict]:
    """``external_host``: where the harness reaches the external listener (the k3d mapping's address)."""
    labels = {"app": "redpanda"}
    args = [
        "redpanda", "start", "--mode", "dev-container", "--smp", "1", "--default-log-level=warn",
        f"--kafka-addr=internal://0.0.0.0:{KAFKA_PORT},external://0.0.0.0:{KAFKA_EXTERNAL_PORT}",
        f"--advertise-kafka-addr=internal://{REDPANDA_ADVERTISED},external://{external_host}:{KAFKA_EXTERNAL_PORT}",
    ]
    headless = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "redpanda", "namespace": APP_NAMESPACE, "labels": labels},
        "spec": {"clusterIP": "None", "selector": labels, "publishNotReadyAddresses": True,
                 "ports": [{"name": "kafka", "port": KAFKA_PORT}, {"name": "admin", "port": REDPANDA_ADMIN_PORT}]},
    }
    external = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "redpanda-external", "namespace": APP_NAMESPACE, "labels": labels},
        "spec": {"type": "NodePort", "selector": labels, "ports": [
            {"name": "kafka-external", "port": KAFKA_EXTERNAL_PORT, "targetPort": KAFKA_EXTERNAL_PORT,
             "nodePort": NODE_PORTS["redpanda-external"]}]},
    }
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "redpanda", "namespace": APP_NAMESPACE, "labels": labels},
        "spec": {
            "serviceName": "redpanda",
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{
                    "name": "redpanda",
                    "image": REDPANDA_IMAGE,
                    "args": args,
                    "ports": [{"name": "kafka", "containerPort": KAFKA_PORT},
                              {"name": "kafka-external", "containerPort": KAFKA_EXTERNAL_PORT},
                              {"name": "admin", "containerPort": REDPANDA_ADMIN_PORT}],
                    "resources": REDPANDA_RESOURCES,
                    "readinessProbe": {"tcpSocket": {"port": KAFKA_PORT}, "periodSeconds": 5},
                    "volumeMounts": [{"name": "data", "mountPath": "/var/lib/redpanda/data"}],
                }]},
            },
            # A volume per pod on k3s' local-path class: scaling to 0 and back (A4) keeps topics and data.
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
                         "resources": {"requests": {"storage": "2Gi"}}},
            }],
        },
    }
    return [headless, external, statefulset]


def topics_job() -> dict:
    """Creates the experiment's topics (matchlab.topology: 12 partitions each) once Redpanda answers."""
    script = " && ".join(
        f"rpk topic create {t} --partitions {PARTITIONS} --replicas 1 -X brokers={REDPANDA_ADVERTISED} || "
        f"rpk topic describe {t} -X brokers={REDPANDA_ADVERTISED}"
        for t in TOPICS
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "create-topics", "namespace": APP_NAMESPACE, "labels": {"app": "redpanda"}},
        "spec": {
            "backoffLimit": 10,
            "template": {"metadata": {"labels": TOPICS_JOB_LABELS},
                         "spec": {"restartPolicy": "OnFailure", "containers": [{
                "name": "rpk", "image": REDPANDA_IMAGE, "command": ["/bin/bash", "-c", script],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
            }]}},
        },
    }


# -- network policies ------------------------------------------------------------------

TOPICS_JOB_LABELS = {"app": "create-topics"}
SHARD_LABELS = {"app": "matching-engine"}
GATEWAY_LABELS = {"app": "edge-gateway"}
LOADGEN_LABELS = {"app": "loadgen"}  # every in-cluster load pod (matchlab.k8s.load_job) carries these
REDPANDA_LABELS = {"app": "redpanda"}
# The pod labels the charts put on their servers (prometheus-community/prometheus, grafana-community/grafana).
PROMETHEUS_SERVER_LABELS = {"app.kubernetes.io/name": "prometheus", "app.kubernetes.io/component": "server"}
GRAFANA_LABELS = {"app.kubernetes.io/name": "grafana"}
PROMETHEUS_PORT = 9090
GRAFANA_PORT = 3000
# Where the harness' port-mapped traffic comes from, as a pod sees it. A NodePort Service masquerades
# what it forwards to the address of the node's interface towards the pod: on k3s' flannel that is
# cni0 (<node podCIDR>.1) for a local pod and flannel.1 (<node podCIDR>.0) for a remote one; so one
# /31 per node podCIDR, which no pod is ever given. These are a 4-node k3d cluster's defaults; the
# backends read the real ones from the nodes before applying (``node_sources``).
K3D_NODE_SOURCES = tuple(f"10.42.{n}.0/31" for n in range(4))


def node_sources(pod_cidrs: Sequence[str], node_ips: Sequence[str] = ()) -> tuple[str, ...]:
    """The ipBlocks standing for "the harness' port mappings": node-owned addresses only, never pods'."""
    out = []
    for cidr in pod_cidrs:
        net = ipaddress.ip_network(cidr, strict=False)
        out.append(f"{net.network_address}/{net.max_prefixlen - 1}")
    out += [f"{ip}/{ipaddress.ip_address(ip).max_prefixlen}" for ip in node_ips]
    return tuple(dict.fromkeys(out))


def _peer_pods(labels: dict[str, str], namespace: str | None = None) -> dict:
    peer: dict = {"podSelector": {"matchLabels": dict(labels)}}
    if namespace is not None:
        peer["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
    return peer


def _ports(*ports: int) -> list[dict]:
    return [{"protocol": "TCP", "port": p} for p in ports]


def _policy(name: str, namespace: str, pods: dict[str, str], rules: list[tuple[list[dict], list[int]]]) -> dict:
    spec: dict = {"podSelector": {"matchLabels": dict(pods)} if pods else {}, "policyTypes": ["Ingress"]}
    spec["ingress"] = [{"from": peers, "ports": _ports(*ports)} for peers, ports in rules]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def network_policies(sources: Sequence[str] = K3D_NODE_SOURCES) -> list[dict]:
    """Ingress for both namespaces: everything denied but the paths the experiments use."""
    harness = [{"ipBlock": {"cidr": c}} for c in sources]
    prometheus = [_peer_pods(PROMETHEUS_SERVER_LABELS, MONITORING_NAMESPACE)]
    app, mon = APP_NAMESPACE, MONITORING_NAMESPACE
    load_pods = [_peer_pods(LOADGEN_LABELS, app)]  # --load-from cluster: orders in, client metrics out
    return [
        _policy("default-deny-ingress", app, {}, []),
        _policy("me-shards", app, SHARD_LABELS, [
            ([_peer_pods(GATEWAY_LABELS)], [APP_HTTP_PORT]),  # orders and seeds routed by the gateway
            (load_pods, [APP_HTTP_PORT]),  # phases that send straight to a shard (ASR 1)
            (prometheus, [APP_METRICS_PORT, RELAY_METRICS_PORT]),  # the shard's metrics and its relay's
            (harness, [APP_HTTP_PORT, APP_METRICS_PORT]),  # load, resets, seeds, metrics through the mappings
        ]),
        _policy("edge-gateway", app, GATEWAY_LABELS, [
            (load_pods, [APP_HTTP_PORT]),
            (prometheus, [APP_METRICS_PORT]),
            (harness, [APP_HTTP_PORT]),
        ]),
        _policy("redpanda", app, REDPANDA_LABELS, [
            # The shards' pods: their relays publish (and a shard itself with EVENTS_MODE=inprocess).
            ([_peer_pods(SHARD_LABELS), _peer_pods(TOPICS_JOB_LABELS)], [KAFKA_PORT]),
            (harness, [KAFKA_EXTERNAL_PORT]),  # the harness reads the topics back (A4, faults)
        ]),
        _policy("default-deny-ingress", mon, {}, []),
        # The remote-write receiver (and the chart's in-pod config reloader's lifecycle call) are reached
        # only from Grafana, the in-cluster load pods (their client metrics) and through the harness'
        # port-forward, which enters the pod directly.
        _policy("prometheus-server", mon, PROMETHEUS_SERVER_LABELS,
                [([_peer_pods(GRAFANA_LABELS), *load_pods], [PROMETHEUS_PORT])]),
        _policy("grafana", mon, GRAFANA_LABELS, [(harness, [GRAFANA_PORT])]),
    ]


def replicas(spec: ServiceSpec, gateway_replicas: int) -> int:
    """The pods a service's Deployment runs: the gateway as many as asked, a shard one."""
    return gateway_replicas if spec.role is Role.GATEWAY else 1


def app_objects(registry: str = "", gateway_replicas: int = 1, images: Mapping[str, str] | None = None) -> list[dict]:
    """``images``: Dockerfile target -> the tag to run (the run's content tags); the version tags by default."""
    out = []
    for spec in app_services(Topology.MULTI):
        if spec.role is Role.SHARD:
            out.append(journal_claim(spec))
        image = (images or {}).get(spec.role.value)
        out += [app_deployment(spec, registry, replicas(spec, gateway_replicas), image), app_service(spec)]
    return out


def all_documents(
    registry: str = "", run_id: str | None = None, sources: Sequence[str] = K3D_NODE_SOURCES,
    external_host: str = "127.0.0.1", gateway_replicas: int = 1, images: Mapping[str, str] | None = None,
) -> dict[str, list[dict]]:
    """File name -> documents, in the order they are applied (policies first: nothing runs unguarded)."""
    return {
        "00-namespaces.yaml": [namespace(APP_NAMESPACE, run_id), namespace(MONITORING_NAMESPACE, run_id)],
        "05-network-policies.yaml": network_policies(sources),
        "10-redpanda.yaml": redpanda(external_host),
        "20-topics.yaml": [topics_job()],
        "30-apps.yaml": app_objects(registry, gateway_replicas, images),
    }


def render(docs: list[dict]) -> str:
    header = "# Generated by `python -m matchlab.k8s.manifests` from matchlab.stack.spec: do not edit by hand.\n"
    return header + "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)


def rendered_files() -> dict[str, str]:
    from matchlab.k8s.helm_values import helm_files

    files = {name: render(docs) for name, docs in all_documents().items()}
    files.update(helm_files())
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed files are stale")
    args = parser.parse_args()
    stale = []
    for name, text in rendered_files().items():
        path = K8S_DIR / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"stale under k8s/: {stale}; run python -m matchlab.k8s.manifests", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
