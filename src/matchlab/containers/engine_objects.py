"""Small readings and writings of Docker engine objects: labels a container carries, its published ports,
its log, a file put into it."""

from __future__ import annotations

import io
import tarfile

from matchlab.errors import ProcessError

LABEL_SERVICE = "matchlab.service"  # the service's name (me-shard-a, broker, ...)
LABEL_READY_PORT = "matchlab.ready-port"  # the container port its readiness check goes to
LABEL_READY = "matchlab.ready-path"  # the HTTP path of that check; empty: a TCP connect


def host_port(container, port: int) -> int:
    """The port on 127.0.0.1 that ``port`` of the container is published on (fixed when it was created)."""
    bindings = container.attrs["HostConfig"]["PortBindings"].get(f"{port}/tcp") or []
    if not bindings:
        raise ProcessError(f"container {container.name} does not publish port {port}")
    return int(bindings[0]["HostPort"])


def log_text(container, tail: int | str = "all") -> str:
    """The container's output (stdout and stderr), its last ``tail`` lines; empty once it is gone."""
    import docker.errors

    try:
        return container.logs(tail=tail).decode(errors="replace")
    except docker.errors.APIError:
        return ""


def container_tar(name: str, text: str) -> bytes:
    """One file as a tar archive, for ``put_archive`` (readable by the container's non-root user)."""
    data = text.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
