"""The pytest layer itself: clean teardown on Ctrl-C, clear prerequisite errors, option checks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from matchlab.waiting import wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PYTEST = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]


def run_pytest(args: list[str], reports: Path, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [*PYTEST, *args, "--reports-dir", str(reports)],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # Popen children inherit an ignored SIGINT from a background shell: restore it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        **kw,
    )


def recorded_pids(reports: Path) -> list[int]:
    try:
        return [int(p) for p in json.loads((reports / "stack-pids.json").read_text())]
    except (OSError, ValueError):
        return []


def test_sigint_mid_run_leaves_no_process_behind(tmp_path: Path):
    reports = tmp_path / "reports"
    proc = run_pytest(["experiments/test_smoke.py", "-q"], reports)
    try:
        pids = wait_until(lambda: len(recorded_pids(reports)) >= 6 and recorded_pids(reports), 60, "the stack to start")
        procs = [psutil.Process(p) for p in pids]
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2, out  # interrupted
    gone, alive = psutil.wait_procs(procs, timeout=5)
    assert not alive, f"left behind: {[p.pid for p in alive]}\n{out}"
    assert recorded_pids(reports) == []


def test_missing_prometheus_is_one_clear_message(tmp_path: Path):
    proc = run_pytest(["experiments/test_smoke.py", "-q", "-x"], tmp_path / "r", env={"PROMETHEUS_BIN": "/nonexistent/prometheus"})
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "PROMETHEUS_BIN='/nonexistent/prometheus' is not an executable file" in out
    assert "apt-get install prometheus" in out
    assert "Traceback" not in out
    assert recorded_pids(tmp_path / "r") == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend", "local", "--kube-context", "x"], "only apply to --backend k8s"),
        (["--backend", "k8s"], "needs --kube-context"),
        (["--plan"], "--plan applies to the Kubernetes backends"),
        (["--profile", "slow"], "invalid choice"),
    ],
)
def test_invalid_option_combinations_are_usage_errors(tmp_path: Path, args, message):
    proc = run_pytest(["experiments/test_smoke.py", "--co", "-q", *args], tmp_path / "r")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 4, out  # pytest's usage-error exit code
    assert message in out


def test_a_port_already_in_use_is_one_clear_message(shard_factory):
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        shard = shard_factory("a", start=False, HTTP_PORT=str(held.getsockname()[1]))
        shard.process.start()
        assert shard.process._proc.wait(20) == 1
    tail = shard.process.log_tail()
    assert "address already in use" in tail.lower() and "Traceback" not in tail


def test_a_broker_that_never_becomes_ready_names_itself(tmp_path, monkeypatch):
    from matchlab.errors import WaitTimeoutError
    from matchlab.stack import broker as broker_module
    from matchlab.stack.probes import free_port

    silent = tmp_path / "silent-broker"
    silent.write_text("#!/bin/sh\necho 'starting, but never listening'\nexec sleep 60\n")
    silent.chmod(0o755)
    monkeypatch.setenv("CALF_TANSU_BIN", str(silent))
    monkeypatch.setattr(broker_module.TansuBroker, "ready_timeout_s", 2.0)
    broker = broker_module.TansuBroker(free_port(), tmp_path / "broker.log")
    with pytest.raises(WaitTimeoutError) as err, broker:
        pass
    text = str(err.value)
    assert "broker to be ready (TCP connect to 127.0.0.1:" in text
    assert "never listening" in text  # the log tail
    assert not broker.process.running()  # torn down on the failed start
