"""``kubectl port-forward`` to a Service on 127.0.0.1, as a context manager that yields its URL.

Prometheus has no host mapping: the harness reaches it through this authenticated path only. The
forward is a client-side relay, not part of the stack, so it ends with the harness even when the stack
is kept (``--keep-stack``): it is also closed at interpreter exit. ``detach()`` hands its process to a
caller that outlives this one (``matchlab up`` records it; ``matchlab down`` stops it).
"""

from __future__ import annotations

import atexit
from pathlib import Path

from matchlab.k8s.kube import Kube
from matchlab.k8s.tools import search_path
from matchlab.stack.probes import HttpProbe, free_port
from matchlab.stack.process import ManagedProcess

LOOPBACK = "127.0.0.1"
READY_S = 60.0


class PortForward:
    def __init__(self, kube: Kube, namespace: str, service: str, remote_port: int, log_path: Path,
                 ready_path: str = "/-/ready", plan: bool = False) -> None:
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.argv = ["kubectl", *kube.args, "port-forward", "-n", namespace, service, f"{self.port}:{remote_port}",
                     "--address", LOOPBACK]
        self.kube, self.log_path, self.ready_path, self.plan = kube, log_path, ready_path, plan
        self.process: ManagedProcess | None = None

    def open(self) -> str:
        if self.plan:
            self.kube.runner.note(f"keep running until the end: {' '.join(self.argv)}")
            return self.url
        # The virtualenv's kubectl first, as for every other command (SubprocessRunner), activated or not.
        self.process = ManagedProcess("prometheus-port-forward", self.argv, self.log_path, env={"PATH": search_path()})
        atexit.register(self.close)
        self.process.start()
        self.process.wait_ready(HttpProbe(f"{self.url}{self.ready_path}"), READY_S)
        return self.url

    def close(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None
        atexit.unregister(self.close)

    def detach(self) -> ManagedProcess | None:
        """Hand the process to the caller, which then owns it."""
        process, self.process = self.process, None
        atexit.unregister(self.close)
        return process

    def __enter__(self) -> str:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()
