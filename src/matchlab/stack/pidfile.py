"""A record of the PIDs a run started, so a later run can reap what a hard kill left.

Only a process whose PID *and* command line still match the record is ever
signalled: a recycled PID belonging to something else is left alone.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path

import psutil

log = logging.getLogger(__name__)


class PidRegistry:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, list[str]]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def add(self, pid: int, cmdline: list[str]) -> None:
        records = self._load()
        records[str(pid)] = cmdline
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(records))

    def remove(self, pid: int) -> None:
        records = self._load()
        if records.pop(str(pid), None) is not None:
            self.path.write_text(json.dumps(records))

    def reap(self) -> list[int]:
        """Kill recorded processes that are still the same processes; forget the rest."""
        reaped = []
        for pid_text, cmdline in self._load().items():
            pid = int(pid_text)
            try:
                proc = psutil.Process(pid)
                if proc.cmdline() != cmdline:
                    continue
                os.killpg(pid, signal.SIGKILL)
                reaped.append(pid)
                log.warning("reaped leftover PID %d from an earlier run: %s", pid, " ".join(cmdline))
            except (psutil.Error, ProcessLookupError, PermissionError):
                continue
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        return reaped
