"""Prerequisites of the Kubernetes backends, checked before anything is created.

One message names everything missing and how to install it; no traceback.
"""

from __future__ import annotations

import shutil

from matchlab.errors import PrerequisiteError

INSTALL = {
    "docker engine": "install Docker Engine (https://docs.docker.com/engine/install/) or Docker Desktop and start it; "
    "`docker info` must answer",
    "k3d": "install k3d: https://k3d.io (e.g. `brew install k3d` or the install script)",
    "helm": "install Helm 3: https://helm.sh/docs/intro/install/ (e.g. `brew install helm`)",
    "kubectl": "install kubectl: https://kubernetes.io/docs/tasks/tools/ (e.g. `brew install kubectl`)",
}


def docker_engine_reachable() -> str | None:
    """None if a Docker engine answers, else why not."""
    try:
        import docker
    except ImportError:
        return "the docker Python SDK is not installed (pip install docker)"
    try:
        client = docker.from_env(timeout=5)
        client.ping()
        client.close()
    except Exception as exc:  # the SDK raises several kinds for "no daemon"
        return f"no Docker engine answers ({type(exc).__name__}: {str(exc)[:160]})"
    return None


def check_prerequisites(need_docker: bool, tools: tuple[str, ...]) -> None:
    missing: list[str] = []
    if need_docker:
        why = docker_engine_reachable()
        if why:
            missing.append(f"- docker engine: {why}. {INSTALL['docker engine']}")
    for tool in tools:
        if shutil.which(tool) is None:
            missing.append(f"- {tool}: not on PATH. {INSTALL[tool]}")
    if missing:
        raise PrerequisiteError("the Kubernetes backend cannot run here; missing:\n" + "\n".join(missing))
