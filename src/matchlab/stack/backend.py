"""Where the stack runs: the interface every backend implements.

Experiments talk to ``Endpoints`` and to these few operations only, so the
same test code runs on local processes and on Kubernetes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from matchlab.stack.spec import Endpoints, Topology


@runtime_checkable
class Backend(Protocol):
    name: str

    def start(self, topology: Topology, run_dir: Path) -> Endpoints:
        """Bring broker, Prometheus, shards, gateway (and Grafana if available) up."""
        ...

    def stop(self) -> None:
        """Tear down everything this backend started; idempotent."""
        ...

    def pause_broker(self) -> None:
        """Make the broker unavailable without losing its data (A4, faults)."""
        ...

    def resume_broker(self) -> None: ...

    def kill_service(self, name: str) -> None:
        """Crash a service abruptly and keep it down until ``restart_service``, for fault tests.

        Local: SIGKILL. Kubernetes: the Deployment scaled to 0 and its pods force-deleted, until none is Ready.
        """
        ...

    def restart_service(self, name: str) -> None:
        """Start a stopped or killed service again and wait until it is ready."""
        ...

    def log_tails(self) -> dict[str, str]:
        """The last lines of every service's log, for reports and errors."""
        ...

    def facts(self) -> dict[str, str]:
        """Versions and settings worth printing in a report."""
        ...
