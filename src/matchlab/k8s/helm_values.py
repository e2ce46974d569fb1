"""Helm values for Prometheus and Grafana, generated from the repository's single sources.

Prometheus (prometheus-community/prometheus): 5 s scrape and evaluation, the
remote-write receiver, the recording rules of ``prometheus/recording-rules.yaml``
verbatim, subcharts off; the chart's default ``kubernetes-pods`` job scrapes
the annotated pods, and an ``event-relay`` job the shards' relay containers
(found by their port's name, labelled like the local stack's relays). Its Service is ClusterIP: nothing maps it to a host, a
NetworkPolicy admits only Grafana, and the harness comes in through an
authenticated ``kubectl port-forward``. The lifecycle API stays on because
the chart's config-reloader sidecar POSTs ``/-/reload`` inside the pod. Grafana (grafana-community/grafana): the Prometheus
datasource with uid ``prometheus``, the dashboard from a ConfigMap built
from ``grafana/dashboards/``, and the admin password read from a Secret the
harness generates per cluster (never a literal here).
"""

from __future__ import annotations

import json

import yaml

from matchlab.k8s.layout import APP_NAMESPACE, MONITORING_NAMESPACE, NODE_PORTS, RELAY_PORT_NAME, resources
from matchlab.observe.dashboard import DASHBOARD_PATH
from matchlab.stack.grafana import DATASOURCE_UID
from matchlab.stack.prometheus_config import RULES_FILE

PROMETHEUS_CHART = ("prometheus-community", "https://prometheus-community.github.io/helm-charts", "prometheus", "25.27.0")
GRAFANA_CHART = ("grafana-community", "https://grafana-community.github.io/helm-charts", "grafana", "11.6.1")
GRAFANA_SECRET = "grafana-admin"
DASHBOARD_CONFIGMAP = "me-dashboard"
PROMETHEUS_URL = f"http://prometheus-server.{MONITORING_NAMESPACE}.svc.cluster.local"
# The charts' server Deployments and their pods' labels (release names "prometheus", "grafana"), for
# restarting them; tests/integration/test_helm_render.py checks them against what the charts render.
CHART_WORKLOADS = {
    "prometheus": ("deployment/prometheus-server", {"app.kubernetes.io/name": "prometheus",
                                                   "app.kubernetes.io/instance": "prometheus",
                                                   "app.kubernetes.io/component": "server"}),
    "grafana": ("deployment/grafana", {"app.kubernetes.io/name": "grafana", "app.kubernetes.io/instance": "grafana"}),
}


def relay_scrape_job() -> dict:
    """Each shard pod's relay container, by its port's name: job and app ``event-relay``, the pod's shard."""
    return {
        "job_name": "event-relay",
        "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [APP_NAMESPACE]}}],
        "relabel_configs": [
            {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "action": "keep",
             "regex": RELAY_PORT_NAME},
            {"source_labels": ["__meta_kubernetes_pod_label_shard"], "target_label": "shard"},
            {"target_label": "app", "replacement": "event-relay"},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        ],
    }


def prometheus_values() -> dict:
    return {
        "alertmanager": {"enabled": False},
        "kube-state-metrics": {"enabled": False},
        "prometheus-node-exporter": {"enabled": False},
        "prometheus-pushgateway": {"enabled": False},
        "server": {
            "global": {"scrape_interval": "5s", "scrape_timeout": "4s", "evaluation_interval": "5s"},
            # web.enable-lifecycle: the chart's config reloader needs it (in-pod loopback call).
            "extraFlags": ["web.enable-lifecycle", "web.enable-remote-write-receiver"],
            # The TSDB outlives the pod: a restarted Prometheus still answers queries over the time before
            # (as on the local backend); the cluster's default storage class.
            "persistentVolume": {"enabled": True, "size": "2Gi"},
            "resources": resources("prometheus"),
            "service": {"type": "ClusterIP", "servicePort": 80},
        },
        "serverFiles": {"recording_rules.yml": yaml.safe_load(RULES_FILE.read_text())},
        # The chart takes extra jobs as one YAML string.
        "extraScrapeConfigs": yaml.safe_dump([relay_scrape_job()], sort_keys=False),
    }


def grafana_values() -> dict:
    return {
        "admin": {"existingSecret": GRAFANA_SECRET, "userKey": "admin-user", "passwordKey": "admin-password"},
        "persistence": {"enabled": False},
        "resources": {"requests": {"cpu": "250m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
        "service": {"type": "NodePort", "port": 80, "nodePort": NODE_PORTS["grafana"]},
        "datasources": {
            "datasources.yaml": {
                "apiVersion": 1,
                "datasources": [{"name": "Prometheus", "uid": DATASOURCE_UID, "type": "prometheus", "access": "proxy",
                                 "url": PROMETHEUS_URL, "isDefault": True, "jsonData": {"timeInterval": "5s"}}],
            }
        },
        "dashboardProviders": {
            "dashboardproviders.yaml": {
                "apiVersion": 1,
                "providers": [{"name": "matching-engine", "orgId": 1, "folder": "", "type": "file",
                               "disableDeletion": False, "options": {"path": "/var/lib/grafana/dashboards/matching-engine"}}],
            }
        },
        "dashboardsConfigMaps": {"matching-engine": DASHBOARD_CONFIGMAP},
    }


def dashboard_configmap() -> dict:
    """The ConfigMap the Grafana values reference, from the one dashboard file."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": DASHBOARD_CONFIGMAP, "namespace": MONITORING_NAMESPACE,
                     "labels": {"app.kubernetes.io/part-of": "matching-engine-experiment"}},
        "data": {DASHBOARD_PATH.name: json.dumps(json.loads(DASHBOARD_PATH.read_text()), indent=1)},
    }


def helm_files() -> dict[str, str]:
    header = "# Generated by `python -m matchlab.k8s.manifests`: do not edit by hand.\n"
    return {
        "helm/prometheus-values.yaml": header + yaml.safe_dump(prometheus_values(), sort_keys=False),
        "helm/grafana-values.yaml": header + yaml.safe_dump(grafana_values(), sort_keys=False),
        "40-grafana-dashboard-configmap.yaml": header + yaml.safe_dump(dashboard_configmap(), sort_keys=False),
    }
