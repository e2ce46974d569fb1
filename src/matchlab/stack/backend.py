"""Where the stack runs: the interface every backend implements, capabilities included.

Experiments talk to ``Endpoints`` and to these operations only, so the same test code runs on local
processes, containers and Kubernetes. What differs between backends is declared here as capabilities
every backend answers (possibly with "none"), so callers never probe with ``getattr``:

- ``load_driver()``: where the experiments' load phases are sent from (None: this process);
- ``processes()``: the services that are this machine's processes, for CPU accounting and budgets
  (empty where they run in containers or pods);
- the faults: pause and resume the broker, kill and restart a service.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from matchlab.stack.spec import Endpoints, Topology

if TYPE_CHECKING:
    from matchlab.loadgen.driver import LoadDriver


class HostProcess(Protocol):
    """A service running as a process of this machine."""

    @property
    def pid(self) -> int | None: ...


@runtime_checkable
class Backend(Protocol):
    name: str

    def start(self, topology: Topology, run_dir: Path) -> Endpoints:
        """Bring broker, Prometheus, shards, gateway (and Grafana if available) up."""
        ...

    def stop(self) -> None:
        """Tear down everything this backend started; idempotent."""
        ...

    # -- capabilities ----------------------------------------------------------

    def load_driver(self) -> LoadDriver | None:
        """The driver that runs the experiments' load phases, or None: they run in the harness' own process."""
        ...

    def processes(self) -> Mapping[str, HostProcess]:
        """Service name -> its process on this machine; empty where services are not host processes."""
        ...

    # -- faults ----------------------------------------------------------------

    def pause_broker(self) -> None:
        """Make the broker unavailable without losing its data (A4, faults)."""
        ...

    def resume_broker(self) -> None: ...

    def kill_service(self, name: str) -> None:
        """Crash a service abruptly and keep it down until ``restart_service``, for fault tests.

        Local: SIGKILL. Docker: ``docker kill``. Kubernetes: the Deployment scaled to 0 and its pods
        force-deleted, until none is Ready.
        """
        ...

    def restart_service(self, name: str) -> None:
        """Start a stopped or killed service again and wait until it is ready."""
        ...

    # -- records ---------------------------------------------------------------

    def log_tails(self) -> dict[str, str]:
        """The last lines of every service's log, for reports and errors."""
        ...

    def facts(self) -> dict[str, str]:
        """Versions and settings worth printing in a report."""
        ...
