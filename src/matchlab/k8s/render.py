"""Rendering the pinned Helm charts with our values, offline, through a real helm binary.

The chart archives are the exact versions the backends install, packaged under
``../shared/charts/`` beside the repository (see its README). ``helm template``
and ``helm lint`` run against them with the committed values files, so what is
checked is what a cluster would receive.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from matchlab.errors import PrerequisiteError
from matchlab.k8s.helm_values import GRAFANA_CHART, PROMETHEUS_CHART
from matchlab.k8s.manifests import K8S_DIR, MONITORING_NAMESPACE

CHARTS_DIR = K8S_DIR.parents[1] / "shared" / "charts"
HELM_TIMEOUT_S = 120
RELEASES = {  # release name -> (chart tuple, committed values file)
    "prometheus": (PROMETHEUS_CHART, K8S_DIR / "helm" / "prometheus-values.yaml"),
    "grafana": (GRAFANA_CHART, K8S_DIR / "helm" / "grafana-values.yaml"),
}


def chart_archive(release: str) -> Path:
    (_, _, chart, version), _ = RELEASES[release]
    path = CHARTS_DIR / f"{chart}-{version}.tgz"
    if not path.is_file():
        raise PrerequisiteError(f"chart archive {path} is missing: the shared/ folder beside the repository holds it")
    return path


def _helm(helm: str, *args: str) -> str:
    proc = subprocess.run([helm, *args], check=False, capture_output=True, text=True, timeout=HELM_TIMEOUT_S)
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, [helm, *args], proc.stdout, proc.stderr)
    return proc.stdout


def template(helm: str, release: str, kube_version: str, values: Path | None = None) -> list[dict]:
    """The objects `helm template` renders for a release (values: the committed file unless given)."""
    out = _helm(helm, "template", release, str(chart_archive(release)), "--namespace", MONITORING_NAMESPACE,
                "--kube-version", kube_version, "-f", str(values or RELEASES[release][1]))
    return [d for d in yaml.safe_load_all(out) if d]


def lint(helm: str, release: str) -> str:
    """`helm lint --strict` output; raises CalledProcessError when the chart and values do not lint clean."""
    return _helm(helm, "lint", "--strict", str(chart_archive(release)), "--namespace", MONITORING_NAMESPACE,
                 "-f", str(RELEASES[release][1]))
