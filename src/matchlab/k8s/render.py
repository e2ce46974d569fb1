"""Rendering the pinned Helm charts with our values through a real helm binary.

The chart archives are the exact versions the backends install. By default they
come from the charts' public repositories (``helm pull`` at the pinned version,
kept in a cache folder so that later runs need no network). A machine without
access to those repositories names a folder holding the archives in
``MATCHLAB_CHARTS_DIR`` (``prometheus-25.27.0.tgz``, ``grafana-11.6.1.tgz``:
``helm pull`` or ``helm package`` makes them). ``helm template`` and ``helm lint``
run against them with the committed values files, so what is checked is what a
cluster would receive.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

import yaml

from matchlab.errors import PrerequisiteError
from matchlab.k8s import tools
from matchlab.k8s.helm_values import GRAFANA_CHART, PROMETHEUS_CHART
from matchlab.k8s.manifests import K8S_DIR, MONITORING_NAMESPACE

CHARTS_DIR_ENV = "MATCHLAB_CHARTS_DIR"
HELM_TIMEOUT_S = 120
RELEASES = {  # release name -> (chart tuple, committed values file)
    "prometheus": (PROMETHEUS_CHART, K8S_DIR / "helm" / "prometheus-values.yaml"),
    "grafana": (GRAFANA_CHART, K8S_DIR / "helm" / "grafana-values.yaml"),
}


def charts_dir(env: Mapping[str, str] | None = None) -> Path | None:
    """The folder ``MATCHLAB_CHARTS_DIR`` names, or None: fetch from the public repositories."""
    raw = (os.environ if env is None else env).get(CHARTS_DIR_ENV, "").strip()
    return Path(raw).expanduser().resolve() if raw else None


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where fetched archives are kept (``$XDG_CACHE_HOME/matchlab/charts``, else ``~/.cache/...``)."""
    base = (os.environ if env is None else env).get("XDG_CACHE_HOME", "").strip()
    return (Path(base) if base else Path.home() / ".cache") / "matchlab" / "charts"


def archive_name(release: str) -> str:
    (_, _, chart, version), _ = RELEASES[release]
    return f"{chart}-{version}.tgz"


def chart_archive(release: str, helm: str | None = None, env: Mapping[str, str] | None = None) -> Path:
    """The pinned chart's archive: from ``MATCHLAB_CHARTS_DIR`` when set, else fetched once into the cache."""
    (_, url, chart, version), _ = RELEASES[release]
    name = archive_name(release)
    local = charts_dir(env)
    if local is not None:
        path = local / name
        if not path.is_file():
            raise PrerequisiteError(f"{CHARTS_DIR_ENV}={local} holds no {name} (the pinned {chart} chart, "
                                    f"version {version}); put it there, or unset {CHARTS_DIR_ENV} to fetch it from "
                                    f"{url}")
        return path
    path = cache_dir(env) / name
    if not path.is_file():
        _fetch(helm or tools.find("helm") or "helm", chart, url, version, path)
    return path


def _fetch(helm: str, chart: str, url: str, version: str, path: Path) -> None:
    """``helm pull`` into a temporary folder beside the cache, then one rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        try:
            _helm(helm, "pull", chart, "--repo", url, "--version", version, "--destination", tmp)
        except (OSError, subprocess.SubprocessError) as exc:
            reason = (getattr(exc, "stderr", None) or str(exc)).strip().splitlines()
            raise PrerequisiteError(
                f"could not fetch the {chart} chart {version} from {url} ({reason[-1] if reason else exc}); on a "
                f"machine without access to it, set {CHARTS_DIR_ENV} to a folder holding {path.name}") from None
        os.replace(Path(tmp) / path.name, path)


def _helm(helm: str, *args: str) -> str:
    proc = subprocess.run([helm, *args], check=False, capture_output=True, text=True, timeout=HELM_TIMEOUT_S)
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, [helm, *args], proc.stdout, proc.stderr)
    return proc.stdout


def template(helm: str, release: str, kube_version: str, values: Path | None = None) -> list[dict]:
    """The objects `helm template` renders for a release (values: the committed file unless given)."""
    out = _helm(helm, "template", release, str(chart_archive(release, helm)), "--namespace", MONITORING_NAMESPACE,
                "--kube-version", kube_version, "-f", str(values or RELEASES[release][1]))
    return [d for d in yaml.safe_load_all(out) if d]


def lint(helm: str, release: str) -> str:
    """`helm lint --strict` output; raises CalledProcessError when the chart and values do not lint clean."""
    return _helm(helm, "lint", "--strict", str(chart_archive(release, helm)), "--namespace", MONITORING_NAMESPACE,
                 "-f", str(RELEASES[release][1]))
