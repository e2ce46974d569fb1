"""A docker stack ``matchlab up`` left running, as a ``Backend`` (for ``pytest --reuse-stack`` and the verbs).

The containers are found again through ``up``'s ledger and the run's labels; faults go through the same
``DockerBackend`` the fixtures use. ``stop()`` leaves the stack running; ``matchlab down`` removes it.
"""

from __future__ import annotations

from pathlib import Path

from matchlab.containers.backend import UP_LEDGER_FILE, DockerBackend
from matchlab.stack.recorded import ReattachedBackend
from matchlab.stack.state import StackRecord


class RecordedContainers(ReattachedBackend):
    def __init__(self, record: StackRecord, reports_dir: Path) -> None:
        self.record = record
        self.name = record.backend
        self.backend = DockerBackend.attach(reports_dir, UP_LEDGER_FILE, Path(record.run_dir))

    def facts(self) -> dict[str, str]:
        return {**self.record.facts, "stack": "reused (docker, left running by matchlab up)"}
