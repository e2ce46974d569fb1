"""Operating a stack another process started, through its record (``stack.json``).

``matchlab`` verbs run in short-lived processes and ``pytest --reuse-stack``
in another one, so none of them holds the ``Popen`` objects of the stack
``matchlab up`` started. ``RecordedStack`` does what ``LocalBackend`` does
(pause the broker, kill or restart a service, stop everything) by recorded
PID, and signals a PID only while its command line still matches the
record. It satisfies the ``Backend`` protocol, so a ``Stack`` can wrap it;
its ``stop()`` leaves the stack running (it belongs to whoever recorded it),
``tear_down()`` stops it.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil

from matchlab.errors import ProcessError, WaitTimeoutError
from matchlab.stack.backend import Backend
from matchlab.stack.pidfile import PidRegistry
from matchlab.stack.process import KILL_WAIT_S, STOP_GRACE_S, ManagedProcess
from matchlab.stack.spec import Endpoints, Topology
from matchlab.stack.state import UP_PID_FILE, ServiceRecord, StackRecord, probe_from_dict, write_state
from matchlab.waiting import wait_until

RESTART_READY_TIMEOUT_S = 60.0
EXIT_POLL_S = 0.05
LOG_TAIL_LINES = 40
# Its storage is in memory: a restarted broker would come back without the topics' data.
NOT_RESTARTABLE = {"broker": "the broker keeps its data in memory; use `matchlab broker pause|resume` instead"}


def exited(proc: psutil.Process) -> bool:
    """Gone, or a zombie: not our child, so its reaping is up to init, which may take seconds."""
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def stop_process(proc: psutil.Process, grace: float = STOP_GRACE_S) -> None:
    """SIGCONT (a paused process cannot handle SIGTERM), SIGTERM, then SIGKILL after ``grace``."""
    try:
        os.killpg(proc.pid, signal.SIGCONT)
        os.killpg(proc.pid, signal.SIGTERM)
        wait_until(lambda: exited(proc), grace, what=f"PID {proc.pid} to exit after SIGTERM", interval=EXIT_POLL_S)
    except WaitTimeoutError:
        os.killpg(proc.pid, signal.SIGKILL)
        wait_until(lambda: exited(proc), KILL_WAIT_S, what=f"PID {proc.pid} to exit after SIGKILL", interval=EXIT_POLL_S)
    except ProcessLookupError:
        pass


class Reattached:
    """The start/stop half of a Backend for a stack someone recorded: it is already up, and stays up."""

    record: StackRecord

    def start(self, topology: Topology, run_dir: Path) -> Endpoints:
        if topology is not self.record.topology:
            raise ProcessError(f"the recorded stack is {self.record.topology.value}, not {topology.value}")
        return self.record.endpoints

    def stop(self) -> None:
        """Leave it running: the stack belongs to whoever recorded it (``matchlab down`` stops it)."""


class ReattachedBackend(Reattached):
    """A recorded stack whose faults and logs go through the backend that started it, rebuilt in this process
    (``self.backend``): the same commands as the fixtures issue. Its load runs on this machine."""

    backend: Backend

    def load_driver(self) -> None:
        return None

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


class RecordedStack(Reattached):
    def __init__(self, record: StackRecord, reports_dir: Path, load_workers: int | None = None) -> None:
        self.record = record
        self.name = record.backend
        self.reports_dir = reports_dir
        self.registry = PidRegistry(reports_dir / UP_PID_FILE)
        self.load_workers = load_workers  # --load-workers: each load phase as that many processes

    def load_driver(self):
        from matchlab.loadgen.process_driver import process_driver

        return process_driver(self.load_workers, self.registry)

    def processes(self) -> dict[str, psutil.Process]:
        """Every recorded service that still runs, as the process it is."""
        return {svc.name: proc for svc in self.record.services if (proc := svc.process()) is not None}

    # -- the Backend protocol ------------------------------------------------

    def pause_broker(self) -> None:
        self._signal(self.running("broker"), signal.SIGSTOP)

    def resume_broker(self) -> None:
        self._signal(self.running("broker"), signal.SIGCONT)

    def kill_service(self, name: str) -> None:
        proc = self.running(name)
        self._signal(proc, signal.SIGKILL)
        wait_until(lambda: exited(proc), KILL_WAIT_S, what=f"{name} (PID {proc.pid}) to exit", interval=EXIT_POLL_S)
        self.registry.remove(proc.pid)

    def restart_service(self, name: str) -> int:
        """Stop (if running) and start again with the same command, ports and log; returns the new PID."""
        svc = self.service(name)
        if name in NOT_RESTARTABLE:
            raise ProcessError(f"{name} cannot be restarted: {NOT_RESTARTABLE[name]}")
        proc = svc.process()
        if proc is not None:
            stop_process(proc)
            self.registry.remove(proc.pid)
        managed = ManagedProcess(
            name, svc.argv, Path(svc.log), svc.env, Path(svc.cwd) if svc.cwd else None, registry=self.registry
        )
        managed.start()
        svc.pid = managed.pid
        write_state(self.reports_dir, self.record)  # the new PID, before waiting: `down` can find it
        managed.wait_ready(probe_from_dict(svc.probe), RESTART_READY_TIMEOUT_S)
        return managed.pid

    def log_tails(self) -> dict[str, str]:
        tails = {}
        for svc in self.record.services:
            try:
                tails[svc.name] = "\n".join(Path(svc.log).read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:])
            except OSError:
                tails[svc.name] = ""
        return tails

    def facts(self) -> dict[str, str]:
        from matchlab.loadgen.process_driver import load_facts

        return {**self.record.facts, "stack": f"reused from {self.reports_dir / 'stack.json'} (matchlab up)",
                **load_facts(self.load_workers)}

    # -- beyond the protocol -------------------------------------------------

    def service(self, name: str) -> ServiceRecord:
        svc = self.record.service(name)
        if svc is None:
            known = ", ".join(s.name for s in self.record.services)
            raise ProcessError(f"no service named {name!r} in this stack; known: {known}")
        return svc

    def running(self, name: str) -> psutil.Process:
        proc = self.service(name).process()
        if proc is None:
            again = "`matchlab down`, then `matchlab up`" if name in NOT_RESTARTABLE else f"`matchlab restart {name}`"
            raise ProcessError(f"{name} is not running (start it again with {again})")
        return proc

    @staticmethod
    def _signal(proc: psutil.Process, sig: signal.Signals) -> None:
        os.killpg(proc.pid, sig)

    def tear_down(self) -> list[str]:
        """Stop every recorded service still running, last started first; what was stopped."""
        stopped = []
        for svc in reversed(self.record.services):
            proc = svc.process()
            if proc is not None:
                stop_process(proc)
                self.registry.remove(proc.pid)
                stopped.append(f"{svc.name} (PID {proc.pid})")
        return stopped
