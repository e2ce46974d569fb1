"""``--load-workers N`` on the local backend: each phase as N real load-generator processes, one merged result.

The experiment runner drives phases through the local backend's process driver against a recording
HTTP target (and a real Prometheus for the workers' client metrics): together the workers must send
the single schedule's orders, each once, and the merged result must hold every worker's samples.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass

import httpx
import psutil
import pytest

from matchlab.errors import PrerequisiteError, ProcessError
from matchlab.experiment.profiles import PROFILES
from matchlab.experiment.record import ExperimentRecord
from matchlab.experiment.runner import ExperimentRunner, Route
from matchlab.loadgen import process_driver
from matchlab.loadgen.calibration import Calibration
from matchlab.loadgen.driver import PhaseLoad
from matchlab.loadgen.flow import hot_symbol_mix
from matchlab.loadgen.process_driver import ProcessLoadDriver
from matchlab.loadgen.profile import LoadProfile
from matchlab.loadgen.results import decode_histogram
from matchlab.loadgen.targets import interleave
from matchlab.loadgen.workers import run_worker_processes
from matchlab.stack.local import LocalBackend
from matchlab.stack.prometheus import find_binary
from matchlab.stack.spec import Endpoints, Topology
from matchlab.stack.stack import Stack
from matchlab.waiting import wait_until
from tests.integration.recording_target import content, recording_target_fixture  # noqa: F401 - the fixture
from tests.unit.fake_backend import FakeBackend

pytestmark = pytest.mark.integration

WORKERS, DURATION_S = 2, 2.0
GATEWAY_ABC = Route(("a", "b", "c"), via_gateway=True)


@dataclass
class FakeStack:
    """What the experiment runner reads of a stack: its backend and its endpoints."""

    backend: object
    endpoints: Endpoints


def endpoints(target: str, prometheus: str = "http://127.0.0.1:9") -> Endpoints:
    return Endpoints(shards={s: target for s in "abc"}, shard_metrics={}, gateway=target, gateway_metrics=None,
                     prometheus=prometheus, broker="127.0.0.1:9")


def loadgen_children() -> list[psutil.Process]:
    """Load generators still running under this process (``-m matchlab.loadgen``; not the trivial server)."""
    return [p for p in psutil.Process().children(recursive=True) if "matchlab.loadgen" in p.cmdline()]


@pytest.fixture
def worker_parts(monkeypatch) -> list[dict]:
    """Every worker's measurements as the driver collected them (the real collection, observed)."""
    seen: list[dict] = []

    def observed(*args, **kwargs):
        parts = run_worker_processes(*args, **kwargs)
        seen.extend(parts)
        return parts

    monkeypatch.setattr(process_driver, "run_worker_processes", observed)
    return seen


def test_two_processes_send_the_phase_s_orders_once_and_merge_into_one_result(recording_target, prometheus,
                                                                               worker_parts, tmp_path):
    backend = LocalBackend(tmp_path, load_workers=WORKERS)
    stack = FakeStack(backend, endpoints(recording_target.url, prometheus.url))
    host_runner, runner = (ExperimentRunner(stack, PROFILES["quick"], "r", progress=lambda line: None)
                           for _ in range(2))
    assert isinstance(runner.load_driver, ProcessLoadDriver)
    hot = hot_symbol_mix("TEST-ASSET-A")
    # The ASR's flow mixed with probe traffic, as A4 and B5 mix them; the second runner draws the same flows
    # (the same seeds) in this process to compare with.
    host = [host_runner.source(GATEWAY_ABC, "hot", mix=hot), host_runner.source(GATEWAY_ABC, "plain")]
    mixed = interleave([(30.0, runner.source(GATEWAY_ABC, "hot", mix=hot)),
                        (10.0, runner.source(GATEWAY_ABC, "plain"))])
    exp = ExperimentRecord("P2", "t", "", GATEWAY_ABC.label, "")
    phase = runner.drive(exp, "P2", GATEWAY_ABC, LoadProfile.constant(40.0, DURATION_S), mixed, None)

    result = phase.load
    expected = Counter()
    for share, source in ((30.0, host[0]), (10.0, host[1])):
        slots = len(list(LoadProfile.constant(share, DURATION_S).send_offsets()))
        expected.update(content(json.loads(source().body)) for _ in range(slots))
    assert sum(expected.values()) == 80
    assert Counter(content(order) for order in recording_target.bodies) == expected  # the single schedule's orders
    assert len({o["orderId"] for o in recording_target.bodies}) == 80  # each once
    assert result.scheduled == result.sent == result.ok == 80
    assert len(worker_parts) == 2 * WORKERS  # two flows, two workers each
    assert result.latency_ms["count"] == sum(decode_histogram(p["overall"]).get_total_count() for p in worker_parts)
    assert result.latency_ms["count"] == 80 and result.extra["workers"] == 4
    assert result.extra["load_from"] == "processes" and result.target_rate == pytest.approx(40.0)
    assert result.schedule_error_ms["p99"] < 100  # the workers started together, at the phase's start
    assert phase.start == pytest.approx(phase.end - DURATION_S, abs=3.0)  # the phase began at the schedule's t=0

    rows = httpx.get(f"{prometheus.url}/api/v1/query", timeout=5, params={
        "query": 'sum by (flow, worker) (loadgen_requests_total{experiment="P2",status="200"})'}).json()["data"]["result"]
    by_worker = {(r["metric"]["flow"], r["metric"]["worker"]): float(r["value"][1]) for r in rows}
    assert by_worker == {("1", "0"): 30.0, ("1", "1"): 30.0, ("2", "0"): 10.0, ("2", "1"): 10.0}
    assert json.loads((tmp_path / "stack-pids.json").read_text()) == {}  # recorded while running, forgotten after
    assert not loadgen_children()


def test_two_processes_drive_a_real_shard_and_the_shard_counts_every_order_once(tmp_path):
    try:
        find_binary()
    except PrerequisiteError as exc:
        pytest.skip(f"prerequisite missing: {exc}")
    reports = tmp_path / "reports"
    backend = LocalBackend(reports, load_workers=WORKERS)
    with Stack(backend, Topology.SINGLE, reports / "run-split" / "single") as stack:
        runner = ExperimentRunner(stack, PROFILES["quick"], "run-split", progress=lambda line: None)
        exp = ExperimentRecord("A2", "t", "ASR 1", "shard a direct", runner.reset_and_seed(["a"], 20, 4))
        route = Route(("a",), via_gateway=False)
        _, orders_before = runner.counters(["a"])
        phase = runner.drive(exp, "A2", route, LoadProfile.constant(30.0, DURATION_S), runner.source(route, "A2"),
                             None)
        _, orders_after = runner.counters(["a"])
        rows = wait_until(lambda: stack.prometheus().query(
            'sum by (worker) (loadgen_requests_total{experiment="A2",status="200"})') or None, 15,
            "the workers' remote-written counters", interval=0.5)
    assert phase.load.ok == phase.load.scheduled == 60 and phase.load.extra["workers"] == WORKERS
    assert orders_after - orders_before == 60  # the shard received the schedule's orders, each once
    assert {r.labels["worker"]: r.value for r in rows} == {"0": 30.0, "1": 30.0}
    assert not loadgen_children()


def test_a_match_rate_phase_runs_unsteered_at_the_calibrated_rate_and_says_so(recording_target, tmp_path):
    runner = ExperimentRunner(FakeStack(LocalBackend(tmp_path, load_workers=WORKERS), endpoints(recording_target.url)),
                              PROFILES["quick"], "r", progress=lambda line: None)
    runner.calibration = Calibration(40.0, 400, 200.0, 0.5)  # 600 matches/min -> 20 orders/s
    exp = ExperimentRecord("B2", "t", "ASR 2", GATEWAY_ABC.label, "")
    phase = runner.drive_matches(exp, "B2", GATEWAY_ABC, 600, DURATION_S, runner.source(GATEWAY_ABC, "B2"))
    assert phase.load.ok == len(recording_target.bodies) == 40
    assert phase.extra["fixed_order_rate"] == pytest.approx(20.0) and phase.extra["steered"] is False
    assert exp.extra["rate_control"]["B2"] == []
    assert re.search(r"B2: not steered to the match rate \(load from processes .*20\.0 orders/s as calibrated",
                     exp.notes[-1])


def test_a_failing_worker_is_named_and_nothing_is_left_behind(recording_target, tmp_path):
    driver = LocalBackend(tmp_path, load_workers=WORKERS).load_driver()
    runner = ExperimentRunner(FakeStack(FakeBackend(), endpoints(recording_target.url)), PROFILES["quick"], "r")
    late = PhaseLoad("X", "late", LoadProfile.constant(10.0, 1.0), runner.source(GATEWAY_ABC, "X"),
                     start_at=time.time() - 30, endpoints=endpoints(recording_target.url))  # workers refuse to run late
    with pytest.raises(ProcessError) as err:
        driver.run(late)
    message = str(err.value)
    assert re.search(r"load worker [01] of 2 for X/late \(flow 1, seed 1\) \(pid \d+\) exited 2", message), message
    assert "after --start-at" in message and "Traceback" not in message
    assert json.loads((tmp_path / "stack-pids.json").read_text()) == {}
    assert not loadgen_children() and not recording_target.bodies


def test_workers_past_their_time_are_stopped_with_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(process_driver, "COMPLETION_GRACE_S", 1.0)
    with socket.create_server(("127.0.0.1", 0)) as silent:  # connections queue, nothing ever answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        driver = LocalBackend(tmp_path, load_workers=WORKERS).load_driver()
        runner = ExperimentRunner(FakeStack(FakeBackend(), endpoints(url)), PROFILES["quick"], "r")
        hung = PhaseLoad("X", "hung", LoadProfile.constant(10.0, 1.0), runner.source(GATEWAY_ABC, "X"),
                         start_at=time.time() + 3, endpoints=endpoints(url))
        with pytest.raises(ProcessError, match=r"X/hung: the load workers were still running \d+ s after the phase "
                                               r"was asked for \(1 s of load\); they were stopped"):
            driver.run(hung)
    assert not loadgen_children() and json.loads((tmp_path / "stack-pids.json").read_text()) == {}


def test_the_first_failure_stops_the_other_workers_at_once(trivial_server):
    url = trivial_server()
    waits = ["--gateway", url, "--rate", "1", "--duration", "1", "--workers", "2", "--start-at",
             str(time.time() + 120), "--quiet"]  # would sleep two minutes before its start
    fails = ["--gateway", url, "--rate", "1", "--duration", "1", "--workers", "2", "--worker-index", "1",
             "--start-at", str(time.time() - 30), "--quiet"]
    began = time.monotonic()
    with pytest.raises(ProcessError, match=r"(?s)load worker 1 \(pid \d+\) exited 2; the other workers were "
                                           r"stopped.*after --start-at"):
        run_worker_processes([[*waits, "--worker-index", "0"], fails], timeout_s=100)
    assert time.monotonic() - began < 30  # not the sleeping worker's two minutes
    assert not loadgen_children()


def test_ctrl_c_stops_the_workers_it_started(trivial_server):
    waits = ["--gateway", trivial_server(), "--rate", "1", "--duration", "1", "--workers", "2", "--worker-index", "0",
             "--start-at", str(time.time() + 120), "--quiet"]
    # Python's own Ctrl-C handling, whatever this session inherited: a job started in the background by a
    # non-interactive shell (a CI runner) ignores SIGINT, and so would its children.
    script = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
              "from matchlab.loadgen.workers import run_worker_processes; "
              f"run_worker_processes([{waits!r}, {waits!r}], 100)")
    parent = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)

    def both_started() -> list[psutil.Process] | None:
        kids = [c for c in psutil.Process(parent.pid).children() if "matchlab.loadgen" in c.cmdline()]
        return kids if len(kids) == 2 else None

    try:
        workers = wait_until(both_started, 30, "two load workers started", interval=0.1)
        parent.send_signal(signal.SIGINT)
        _, err = parent.communicate(timeout=30)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    assert "KeyboardInterrupt" in err
    _, alive = psutil.wait_procs(workers, timeout=5)
    assert not alive, f"left behind: {alive}"
