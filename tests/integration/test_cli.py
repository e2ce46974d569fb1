"""`matchlab` against real stacks, and the pytest plugin's options from anywhere (subprocesses)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from matchlab.stack.pidfile import PidRegistry
from matchlab.stack.state import read_state
from matchlab.waiting import wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MATCHLAB = str(Path(sys.executable).with_name("matchlab"))  # the console script of this environment
CLI_TIMEOUT_S = 120


def matchlab(reports: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([MATCHLAB, *args, "--reports-dir", str(reports)],
                          check=False, capture_output=True, text=True, timeout=CLI_TIMEOUT_S)


def pytest_run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=cwd, check=False, capture_output=True, text=True, timeout=300)


def registry(reports: Path) -> dict:
    try:
        return json.loads((reports / "up-pids.json").read_text())
    except OSError:
        return {}


def gone(pids) -> bool:
    def dead(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    return all(dead(int(p)) for p in pids)


@pytest.fixture
def reports(tmp_path: Path):
    path = tmp_path / "reports"
    yield path
    matchlab(path, "down")  # whatever a test left, stopped by recorded PID


def stats(reports: Path, shard: str = "a") -> dict:
    """The shard's admin stats, with the stack's token from the record `up` wrote (readable only by its owner)."""
    state = read_state(reports)
    ep = state.endpoints
    return httpx.get(f"{ep.shards[shard]}/admin/stats", headers=ep.admin_headers, timeout=5).json()


def test_up_status_order_book_broker_pause_down(reports: Path):
    up = matchlab(reports, "up", "--topology", "single")
    assert up.returncode == 0, up.stderr
    record = read_state(reports)
    pids = [s.pid for s in record.services]
    assert "shard a" in up.stdout and record.endpoints.prometheus in up.stdout

    status = matchlab(reports, "status")
    assert status.returncode == 0, status.stdout
    for svc in record.services:
        assert f"{svc.name}" in status.stdout and "not running" not in status.stdout
    assert status.stdout.count(" healthy ") == len(record.services) == 4  # broker, shard a, its relay, prometheus
    assert f" healthy     {record.endpoints.shards['a']}\n" in status.stdout  # where a user goes, not a probe path

    order = matchlab(reports, "order", "TEST-ASSET-A", "BUY", "LIMIT", "7", "12345")
    assert order.returncode == 0 and order.stdout.startswith("ACCEPTED cli-"), order.stderr
    wait_until(lambda: "BID       12345         7  (1 order)" in matchlab(reports, "book", "TEST-ASSET-A").stdout,
               10, "the order in the book")

    wait_until(lambda: stats(reports)["eventsPending"] == 0, 15, "events delivered before the pause")
    assert matchlab(reports, "broker", "pause").returncode == 0
    crossing = matchlab(reports, "order", "TEST-ASSET-A", "SELL", "LIMIT", "7", "12345")
    assert crossing.stdout.startswith("ACCEPTED"), crossing.stderr  # acknowledged with the broker frozen
    wait_until(lambda: stats(reports)["matches"] == 1, 10, "the crossing order to match")
    assert stats(reports)["eventsPending"] >= 2  # ORDER_PLACED and MATCH_EXECUTED wait for the broker
    assert " paused " in matchlab(reports, "status").stdout
    assert matchlab(reports, "broker", "resume").returncode == 0
    wait_until(lambda: stats(reports)["eventsPending"] == 0, 30, "the waiting events to be delivered")

    # The relay is a service of the stack like any other: killed, it shows; restarted, it is healthy again.
    relay = record.service("me-relay-a")
    assert matchlab(reports, "kill", "me-relay-a").stdout.startswith(f"killed me-relay-a (PID {relay.pid})")
    assert re.search(r"me-relay-a\s+-\s+not running", matchlab(reports, "status").stdout)
    assert matchlab(reports, "restart", "me-relay-a").returncode == 0
    assert matchlab(reports, "status").stdout.count(" healthy ") == 4
    pids.append(read_state(reports).service("me-relay-a").pid)

    down = matchlab(reports, "down")
    assert down.returncode == 0 and down.stdout.count("stopped ") == 4, down.stdout
    assert gone(pids) and read_state(reports) is None and registry(reports) == {}
    assert matchlab(reports, "down").stdout.strip() == "nothing to tear down"


def test_up_twice_does_not_start_a_second_stack(reports: Path):
    assert matchlab(reports, "up", "--topology", "single").returncode == 0
    first = read_state(reports)
    again = matchlab(reports, "up", "--topology", "single")
    assert again.returncode == 0 and again.stdout.startswith("already up"), again.stdout
    assert [s.pid for s in read_state(reports).services] == [s.pid for s in first.services]
    assert len(list(reports.glob("up-*/single"))) == 1
    other = matchlab(reports, "up", "--topology", "multi")
    assert other.returncode == 1 and "a single stack on local is already up" in other.stderr


def test_down_after_a_crashed_up_reaps_its_leftovers(reports: Path):
    up = subprocess.Popen([MATCHLAB, "up", "--topology", "single", "--reports-dir", str(reports)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: len(registry(reports)) >= 2, 60, "broker and shard to be started")
        up.send_signal(signal.SIGKILL)  # mid-start: no stack.json yet, processes left behind
        up.wait(10)
    finally:
        if up.poll() is None:
            up.kill()
    assert read_state(reports) is None, "up finished before it could be crashed"
    leftovers = list(registry(reports))
    assert not gone(leftovers)
    down = matchlab(reports, "down")
    assert down.returncode == 0 and "reaped leftover PID" in down.stdout, down.stdout
    assert wait_until(lambda: gone(leftovers), 10, "the leftovers to exit")
    # The kill may land between starting a process (the relay, just after its shard) and recording it.
    wait_until(lambda: not PidRegistry(reports / "up-pids.json").marked_leaders(), 10,
               "no process started under the record to remain, recorded or not")


def test_up_in_the_foreground_tears_down_on_ctrl_c(reports: Path):
    up = subprocess.Popen([MATCHLAB, "up", "--topology", "single", "--foreground", "--reports-dir", str(reports)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: read_state(reports) is not None, 60, "the stack to be recorded")
        pids = [s.pid for s in read_state(reports).services]
        assert not gone(pids)
        up.send_signal(signal.SIGINT)
        out, _ = up.communicate(timeout=60)
    finally:
        if up.poll() is None:
            up.kill()
    assert up.returncode == 0, out
    assert out.count("stopped ") == len(pids) == 4, out  # broker, shard a, its relay, prometheus
    assert gone(pids) and read_state(reports) is None and registry(reports) == {}


def test_pytest_reuse_stack_runs_the_smoke_tests_against_an_up_stack(reports: Path):
    assert matchlab(reports, "up").returncode == 0
    before = registry(reports)
    run = pytest_run(["-m", "smoke", "-k", "healthy or accepted or routes", "--reuse-stack",
                      "--reports-dir", str(reports)], cwd=ROOT)
    assert run.returncode == 0, run.stdout[-3000:]
    assert "multi stack: reused the stack `matchlab up` left running" in run.stdout
    assert "4 passed" in run.stdout and "cold start" not in run.stdout  # no stack of its own
    assert registry(reports) == before  # the same processes serve
    assert not list(reports.glob("run-*/*/logs"))  # and pytest started none of its own
    assert matchlab(reports, "status").returncode == 0  # left running


@pytest.mark.parametrize("exists", [True, False], ids=["existing-folder", "missing-folder"])
def test_options_work_with_a_space_before_the_reports_folder_and_from_any_directory(tmp_path: Path, exists: bool):
    reports = tmp_path / "elsewhere" / "reports"
    if exists:
        reports.mkdir(parents=True)  # an existing folder is what pytest would take for its rootdir
    select = ["-m", "smoke", "-k", "every_service_is_healthy or an_order_is_accepted"]
    in_repo = set((ROOT / "reports").glob("run-*"))
    run = pytest_run([*select, "--reports-dir", str(reports)], cwd=ROOT)
    assert run.returncode == 0 and "2 passed" in run.stdout, run.stdout[-3000:] + run.stderr
    assert list(reports.glob("run-*/multi/logs/me-shard-a.log"))
    # The repository's root and pytest.ini, as without the option; the plugin's markers.
    assert f"rootdir: {ROOT}\nconfigfile: pytest.ini" in run.stdout and "PytestUnknownMarkWarning" not in run.stdout
    assert re.search(r"^experiments/test_smoke\.py \.\. ", run.stdout, re.MULTILINE)  # paths from that root

    away = pytest_run([str(ROOT / "experiments" / "test_smoke.py"), *select, "--profile", "quick",
                       "--reports-dir", str(reports)], cwd=tmp_path)
    assert away.returncode == 0 and "2 passed" in away.stdout, away.stdout[-3000:] + away.stderr
    assert f"rootdir: {ROOT}\nconfigfile: pytest.ini" in away.stdout
    assert len(list(reports.glob("run-*/multi"))) == 2
    assert set((ROOT / "reports").glob("run-*")) == in_repo
