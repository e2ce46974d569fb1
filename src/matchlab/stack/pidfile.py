"""A record of the PIDs a run started, so a later run can reap what a hard kill left.

Only a process whose PID *and* command line still match the record is ever
signalled: a recycled PID belonging to something else is left alone.

A harness killed -9 between starting a process and recording it leaves one
the record does not name (a CI run left a relay so). Every process started
under a record therefore carries the record's path in its environment
(``MATCHLAB_PID_RECORD``), which nothing but the harness sets, and a reap
stops those too: still only processes this record's runs started.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path

import psutil

log = logging.getLogger(__name__)


MARKER_VAR = "MATCHLAB_PID_RECORD"


class PidRegistry:
    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def marker(self) -> dict[str, str]:
        """The environment that marks a process as started under this record."""
        return {MARKER_VAR: str(self.path.resolve())}

    def marked_leaders(self) -> list[int]:
        """Process-group leaders that carry this record's marker: started under it, recorded or not."""
        mine = str(self.path.resolve())
        own = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
        found = []
        for proc in psutil.process_iter():
            try:
                if proc.pid in own or os.getpgid(proc.pid) != proc.pid:
                    continue
                if proc.environ().get(MARKER_VAR) == mine:
                    found.append(proc.pid)
            except (psutil.Error, ProcessLookupError, PermissionError):
                continue
        return found

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
        """Kill recorded processes that are still the same processes, and unrecorded ones carrying the marker;
        forget the rest."""
        reaped = []
        recorded = self._load()
        for pid in self.marked_leaders():
            if str(pid) not in recorded:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    continue
                reaped.append(pid)
                log.warning("reaped PID %d, started under %s but never recorded (its starter was killed)", pid,
                            self.path)
        for pid_text, cmdline in recorded.items():
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
