"""A process the harness started, and only that: start, wait ready, signal, stop by PID.

Each process runs in its own session (process group), so stopping it stops
its children too, and nothing the harness did not start is ever signalled.
Stop is SIGTERM, then SIGKILL after a grace period; it is idempotent.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from matchlab.errors import ProcessError
from matchlab.stack.pidfile import PidRegistry
from matchlab.stack.probes import Probe
from matchlab.waiting import wait_until

log = logging.getLogger(__name__)

STOP_GRACE_S = 15.0
# A SIGKILLed process still in uninterruptible I/O (a disk stalled by writeback)
# dies only when that I/O completes, which on a busy VM has taken over 20 s.
KILL_WAIT_S = 60.0
LOG_TAIL_LINES = 40


class ManagedProcess:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        registry: PidRegistry | None = None,
    ) -> None:
        self.name = name
        self.registry = registry
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env or {})
        self.cwd = cwd
        self._proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> ManagedProcess:
        if self._proc is not None and self._proc.poll() is None:
            raise ProcessError(f"{self.name} is already running as PID {self._proc.pid}")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            try:
                self._proc = subprocess.Popen(
                    self.argv,
                    env={**os.environ, **self.env, **(self.registry.marker if self.registry else {})},
                    cwd=self.cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                raise ProcessError(f"cannot start {self.name} ({self.argv[0]}): {exc.strerror}") from None
        if self.registry is not None:
            self.registry.add(self._proc.pid, self.argv)
        log.debug("started %s as PID %d: %s", self.name, self._proc.pid, " ".join(self.argv))
        return self

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def exit_code(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def wait_ready(self, probe: Probe, timeout: float, hint: str = "") -> None:
        """Wait for ``probe``; fail at once (with the log tail) if the process exits."""

        def check() -> bool:
            if not self.running():
                raise ProcessError(f"{self.name} exited with code {self.exit_code()} before it was ready")
            return probe.check()

        try:
            wait_until(
                check,
                timeout,
                what=f"{self.name} to be ready ({probe.describe()})",
                hint=hint,
                log_tail=self.log_tail,
            )
        except Exception:
            if not self.running():
                raise ProcessError(
                    f"{self.name} exited with code {self.exit_code()} before it was ready "
                    f"({probe.describe()}); log {self.log_path}:\n{self.log_tail()}"
                ) from None
            raise

    def signal(self, sig: signal.Signals) -> None:
        if self.running():
            os.killpg(self._proc.pid, sig)

    def suspend(self) -> None:
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL now (a crash, for fault tests) and reap."""
        if self.running():
            os.killpg(self._proc.pid, signal.SIGKILL)
            if not self._reaped(KILL_WAIT_S):
                raise ProcessError(f"{self.name} (PID {self._proc.pid}) did not die within {KILL_WAIT_S:.0f} s of SIGKILL")
            if self.registry is not None:
                self.registry.remove(self._proc.pid)

    def stop(self, grace: float = STOP_GRACE_S) -> int | None:
        """SIGTERM, wait up to ``grace``, then SIGKILL. Returns the exit code."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGCONT)  # a suspended process cannot handle SIGTERM
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                log.warning("%s (PID %d) ignored SIGTERM for %.0fs; sending SIGKILL", self.name, proc.pid, grace)
                os.killpg(proc.pid, signal.SIGKILL)
                if not self._reaped(KILL_WAIT_S):
                    return None  # stays recorded, so the next start's reap finds it
            except ProcessLookupError:
                pass
        if self.registry is not None:
            self.registry.remove(proc.pid)
        return proc.poll()

    def _reaped(self, timeout: float) -> bool:
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("%s (PID %d) is still alive %.0f s after SIGKILL (stuck in uninterruptible I/O?); "
                      "it stays in the PID record for the next clean-up", self.name, self._proc.pid, timeout)
            return False
        return True

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class ProcessService:
    """A service that is one managed process plus a readiness probe; a context manager.

    ``start()`` waits for the probe, then runs ``after_ready()``; if anything
    fails half-way, ``__enter__`` stops what started before re-raising.
    """

    process: ManagedProcess
    ready_timeout_s: float = 30.0

    def probe(self) -> Probe:
        raise NotImplementedError

    def after_ready(self) -> None:
        pass

    def start(self):
        self.process.start()
        self.process.wait_ready(self.probe(), self.ready_timeout_s)
        self.after_ready()
        return self

    def stop(self) -> None:
        self.process.stop()

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            stop_after_failure(self.stop, type(self).__name__)
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


def stop_after_failure(stop: Callable[[], object], what: str) -> None:
    """Clean up after a failed start without replacing its cause.

    A clean-up that raised would hide the exception that made it run: a
    Ctrl-C would turn into an ordinary error and the run would carry on.
    """
    try:
        stop()
    except Exception:
        log.exception("stopping %s after a failed start failed too", what)
