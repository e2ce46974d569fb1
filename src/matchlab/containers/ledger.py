"""What a run created on the Docker engine, written down before each thing is created.

A container, network or volume is entered in the ledger (a JSON file in the reports folder) before the
engine is asked to create it, and carries the run's label (``matchlab.run``). Teardown deletes what
the ledger lists, and only where the engine's object still bears this run's label: a same-named object
someone else made is left alone. A run killed hard leaves its ledger behind; the next run with the same
ledger reaps it first (as ``PidRegistry`` does for local processes). ``matchlab up`` keeps its own
ledger (``up-docker.json``), so a test run never removes a stack left running on purpose.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

RUN_LABEL = "matchlab.run"
KINDS = ("container", "network", "volume")  # teardown order: containers hold the network and volumes


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    run: str


class ResourceLedger:
    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> list[Entry]:
        try:
            return [Entry(**e) for e in json.loads(self.path.read_text())]
        except (OSError, ValueError, TypeError):
            return []

    def _write(self, entries: list[Entry]) -> None:
        if not entries:
            self.path.unlink(missing_ok=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps([asdict(e) for e in entries], indent=1))
        tmp.replace(self.path)  # a kill mid-write leaves the previous ledger, never half of one

    def add(self, kind: str, name: str, run: str) -> None:
        entries = self.entries()
        if Entry(kind, name, run) not in entries:
            self._write([*entries, Entry(kind, name, run)])

    def runs(self) -> list[str]:
        return list(dict.fromkeys(e.run for e in self.entries()))

    def delete(self, client, run: str | None = None) -> list[str]:
        """Delete what the ledger lists (of ``run``, or of every run), containers first; what was deleted."""
        deleted, kept = [], []
        entries = self.entries()
        for kind in KINDS:
            for entry in entries:
                if entry.kind != kind:
                    continue
                if run is not None and entry.run != run:
                    kept.append(entry)
                elif _delete(client, entry):
                    deleted.append(f"{entry.kind} {entry.name}")
        self._write(kept)
        return deleted


def _delete(client, entry: Entry) -> bool:
    """Remove one object if it exists and bears the entry's run label; True if it was removed."""
    import docker.errors

    collection = {"container": client.containers, "network": client.networks, "volume": client.volumes}[entry.kind]
    try:
        obj = collection.get(entry.name)
    except docker.errors.NotFound:
        return False
    labels = obj.attrs.get("Config", {}).get("Labels") if entry.kind == "container" else obj.attrs.get("Labels")
    if (labels or {}).get(RUN_LABEL) != entry.run:
        log.warning("%s %s is not this run's (label %s): left alone", entry.kind, entry.name, RUN_LABEL)
        return False
    try:
        if entry.kind == "container":
            obj.remove(force=True)  # a paused or running container is killed first
        else:
            obj.remove()
    except docker.errors.NotFound:
        return False
    return True
