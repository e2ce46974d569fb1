"""A local Prometheus server process: the real binary, a generated config.

The binary comes from ``PROMETHEUS_BIN`` or PATH; a missing one is a
PrerequisiteError that says how to install it. The server listens on
127.0.0.1 only and accepts remote write (the load generator pushes there).
The lifecycle API (``/-/quit``, ``/-/reload``) stays off: the harness restarts
Prometheus as a process and never reloads it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from matchlab.errors import PrerequisiteError
from matchlab.stack.probes import HttpProbe
from matchlab.stack.process import ManagedProcess, ProcessService

READY_TIMEOUT_S = 30.0
INSTALL_HINT = (
    "install it with `sudo apt-get update && sudo apt-get install prometheus` (Debian/Ubuntu), "
    "`brew install prometheus` (macOS), or set PROMETHEUS_BIN to the binary's path"
)


def find_binary(name: str = "prometheus", env_var: str = "PROMETHEUS_BIN") -> str:
    override = os.environ.get(env_var) if name == "prometheus" else None
    if override:
        if not (os.path.isfile(override) and os.access(override, os.X_OK)):
            raise PrerequisiteError(f"{env_var}={override!r} is not an executable file; {INSTALL_HINT}")
        return override
    found = shutil.which(name)
    if found is None:
        raise PrerequisiteError(f"the `{name}` binary is not on PATH; {INSTALL_HINT}")
    return found


class PrometheusServer(ProcessService):
    ready_timeout_s = READY_TIMEOUT_S

    def __init__(self, port: int, workdir: Path, config_yaml: str) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.workdir = workdir
        self.config_path = workdir / "prometheus.yml"
        binary = find_binary()
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(config_yaml)
        self.process = ManagedProcess(
            "prometheus",
            [
                binary,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--web.enable-remote-write-receiver",
                "--storage.tsdb.retention.time=1d",
            ],
            workdir / "prometheus.log",
        )

    @property
    def remote_write_url(self) -> str:
        return f"{self.url}/api/v1/write"

    def probe(self) -> HttpProbe:
        return HttpProbe(f"{self.url}/-/ready")
