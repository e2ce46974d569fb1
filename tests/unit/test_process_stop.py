"""Stopping what the harness started when stopping itself goes wrong.

A CI run once met a Prometheus that outlived SIGTERM (15 s) and SIGKILL (5 s),
stuck in disk I/O: the stop's TimeoutExpired replaced the Ctrl-C that caused
it, and the interrupted run carried on. These pin down both halves.
"""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from matchlab.stack import process as process_module
from matchlab.stack.pidfile import PidRegistry
from matchlab.stack.process import ManagedProcess, ProcessService, stop_after_failure

IGNORES_SIGTERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"


def started(tmp_path, registry) -> ManagedProcess:
    proc = ManagedProcess("stubborn", [sys.executable, "-c", IGNORES_SIGTERM], tmp_path / "p.log", registry=registry)
    proc.start()
    process_module.wait_until(lambda: "up" in proc.log_tail(), 10, what="the child to install its handler")
    return proc


def test_a_process_that_ignores_sigterm_is_killed_and_forgotten(tmp_path):
    registry = PidRegistry(tmp_path / "pids.json")
    proc = started(tmp_path, registry)
    assert registry._load()
    assert proc.stop(grace=0.3) == -9
    assert registry._load() == {}


def test_a_process_that_outlives_sigkill_stays_recorded_and_stop_does_not_raise(tmp_path, monkeypatch, caplog):
    registry = PidRegistry(tmp_path / "pids.json")
    proc = started(tmp_path, registry)
    pid = proc.pid
    real_wait = proc._proc.wait
    calls = []

    def stuck_wait(timeout=None):  # what a process in uninterruptible I/O looks like from here
        calls.append(timeout)
        raise subprocess.TimeoutExpired(proc.argv, timeout)

    monkeypatch.setattr(proc._proc, "wait", stuck_wait)
    monkeypatch.setattr(process_module, "KILL_WAIT_S", 0.1)
    with caplog.at_level(logging.ERROR, logger=process_module.__name__):
        assert proc.stop(grace=0.1) is None
    assert calls == [0.1, 0.1]
    assert str(pid) in registry._load(), "an unreaped process must stay recorded for the next reap"
    assert f"PID {pid}) is still alive" in caplog.text
    monkeypatch.undo()
    assert real_wait(10) == -9  # the SIGKILL did go out


def test_kill_that_cannot_reap_names_the_process(tmp_path, monkeypatch):
    proc = started(tmp_path, None)
    monkeypatch.setattr(proc._proc, "wait", lambda timeout=None: (_ for _ in ()).throw(subprocess.TimeoutExpired("x", timeout)))
    monkeypatch.setattr(process_module, "KILL_WAIT_S", 0.1)
    with pytest.raises(process_module.ProcessError, match=r"stubborn \(PID \d+\) did not die"):
        proc.kill()
    monkeypatch.undo()
    proc._proc.wait(10)


class FailsToStart(ProcessService):
    def __init__(self, cause: BaseException, stop_error: Exception | None) -> None:
        self.cause, self.stop_error, self.stopped = cause, stop_error, 0

    def start(self):
        raise self.cause

    def stop(self) -> None:
        self.stopped += 1
        if self.stop_error is not None:
            raise self.stop_error


@pytest.mark.parametrize("cause", [KeyboardInterrupt(), RuntimeError("probe failed")])
def test_a_failing_clean_up_never_replaces_the_cause(cause, caplog):
    service = FailsToStart(cause, subprocess.TimeoutExpired(["prometheus"], 5))
    with caplog.at_level(logging.ERROR, logger=process_module.__name__), pytest.raises(type(cause)) as raised, service:
        pass
    assert raised.value is cause
    assert service.stopped == 1
    assert "stopping FailsToStart after a failed start failed too" in caplog.text
    assert "prometheus" in caplog.text


def test_a_clean_up_that_works_is_just_run():
    ran = []
    stop_after_failure(lambda: ran.append(1), "x")
    assert ran == [1]


def test_a_process_started_but_never_recorded_is_reaped_by_its_marker(tmp_path):
    """A harness killed -9 between Popen and recording the PID (a CI run left a relay so) leaves an unrecorded
    process; the reap finds it by the record's marker in its environment, and leaves others' processes alone."""
    registry = PidRegistry(tmp_path / "pids.json")
    other = PidRegistry(tmp_path / "other" / "pids.json")
    orphan, neighbour = started(tmp_path, registry), started(tmp_path / "other", other)
    registry.remove(orphan.pid)  # what the kill between start and record leaves
    assert registry._load() == {}
    try:
        assert registry.reap() == [orphan.pid]
        assert orphan._proc.wait(10) == -9
        assert neighbour.running(), "a process started under another record is not this reap's"
    finally:
        neighbour.stop(grace=0.3)
        orphan.stop(grace=0.3)
