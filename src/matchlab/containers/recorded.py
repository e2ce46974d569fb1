"""A docker stack ``matchlab up`` left running, as a ``Backend`` (for ``pytest --reuse-stack`` and the verbs).

The containers are found again through ``up``'s ledger and the run's labels; faults go through the same
``DockerBackend`` the fixtures use. ``stop()`` leaves the stack running; ``matchlab down`` removes it.
"""

from __future__ import annotations

from pathlib import Path

from matchlab.containers.backend import UP_LEDGER_FILE, DockerBackend
from matchlab.stack.recorded import Reattached
from matchlab.stack.state import StackRecord


class RecordedContainers(Reattached):
    def __init__(self, record: StackRecord, reports_dir: Path) -> None:
        self.record = record
        self.name = record.backend
        self.backend = DockerBackend.attach(reports_dir, UP_LEDGER_FILE, Path(record.run_dir))

    def load_driver(self) -> None:
        return None  # the load runs on this machine, against the published ports

    def processes(self) -> dict:
        return {}

    def pause_broker(self) -> None:
        self.backend.pause_broker()

    def resume_broker(self) -> None:
        self.backend.resume_broker()

    def kill_service(self, name: str) -> None:
        self.backend.kill_service(name)

    def restart_service(self, name: str) -> None:
        self.backend.restart_service(name)

    def log_tails(self) -> dict[str, str]:
        return self.backend.log_tails()

    def facts(self) -> dict[str, str]:
        return {**self.record.facts, "stack": "reused (docker, left running by matchlab up)"}

    def tear_down(self) -> list[str]:
        """Collect the logs into the run folder, remove what `up` created; what was removed."""
        self.backend.collect_logs()
        return self.backend.remove_recorded()
