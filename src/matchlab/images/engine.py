"""Reaching the Docker engine through the Docker SDK, or one line saying why not and what to do.

The harness never starts a system daemon itself: a missing engine is a prerequisite, named with how to
install it, and a stopped one with how to start it (``WITH_DOCKER=1 scripts/setup.sh`` does both on
Debian as root).
"""

from __future__ import annotations

import shutil

from matchlab.errors import PrerequisiteError

ENGINE_TIMEOUT_S = 600  # API calls that build or import images can take minutes
PING_TIMEOUT_S = 5
INSTALL = ("install Docker Engine (https://docs.docker.com/engine/install/; on Debian as root "
           "`WITH_DOCKER=1 bash scripts/setup.sh` installs and starts it)")
START = "start it (`systemctl start docker`, or as root without systemd: `dockerd > /var/log/dockerd.log 2>&1 &`)"


def engine_problem() -> str | None:
    """None if a Docker engine answers, else one line: what is wrong and what to do."""
    try:
        import docker
    except ImportError:
        return "the docker Python SDK is not installed (pip install docker)"
    try:
        client = docker.from_env(timeout=PING_TIMEOUT_S)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - the SDK raises several kinds for "no daemon"
        text = str(exc)
        if "Permission denied" in text:
            return "the Docker engine refuses this user: add it to the `docker` group or run as root"
        if shutil.which("dockerd") is not None:
            return f"the Docker engine is installed but not running: {START}"
        return f"no Docker engine answers ({type(exc).__name__}); {INSTALL}"
    return None


def engine_client(timeout: int = ENGINE_TIMEOUT_S):
    """A ``docker.DockerClient`` for the local engine; PrerequisiteError (one line) when none answers."""
    problem = engine_problem()
    if problem:
        raise PrerequisiteError(problem)
    import docker

    return docker.from_env(timeout=timeout)
