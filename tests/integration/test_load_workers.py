"""Several load-generator processes sharing one schedule, as the in-cluster Job's pods run them."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from matchlab.loadgen.__main__ import main as loadgen_main
from matchlab.loadgen.profile import LoadProfile
from matchlab.loadgen.segments import merged_result
from matchlab.loadgen.workers import run_worker_processes

pytestmark = pytest.mark.integration

WORKERS, RATE, DURATION_S = 3, 60.0, 3.0
START_LEAD_S = 5.0  # interpreter start-up of three processes on a busy 2-core machine


def test_three_workers_send_the_single_schedule_once_and_merge_into_one_result(trivial_server, prometheus):
    prom = prometheus
    url = trivial_server()
    start_at = time.time() + START_LEAD_S
    argv = ["--gateway", url, "--rate", str(RATE), "--duration", str(DURATION_S), "--seed", "5",
            "--workers", str(WORKERS), "--start-at", str(start_at), "--remote-write", prom.remote_write_url,
            "--label", "run=split1", "--result-lines", "--quiet"]
    parts = run_worker_processes([[*argv, "--worker-index", str(i)] for i in range(WORKERS)],
                                 START_LEAD_S + DURATION_S + 30)
    single = LoadProfile.constant(RATE, DURATION_S)
    result = merged_result(parts, single)
    expected = len(list(single.send_offsets()))
    assert result.scheduled == result.sent == result.ok == expected == 180
    assert sorted(p["sent"] for p in parts) == [60, 60, 60]
    assert result.latency_ms["count"] == expected and result.target_rate == RATE
    assert result.schedule_error_ms["p99"] < 50  # they started together, on the common start time

    rows = httpx.get(f"{prom.url}/api/v1/query", timeout=5, params={
        "query": 'sum by (worker) (loadgen_requests_total{run="split1",status="200"})'}).json()["data"]["result"]
    assert {r["metric"]["worker"]: float(r["value"][1]) for r in rows} == {"0": 60.0, "1": 60.0, "2": 60.0}


def test_a_worker_that_missed_the_common_start_refuses_to_run_late(trivial_server):
    url = trivial_server()
    proc = subprocess.run(
        [sys.executable, "-m", "matchlab.loadgen", "--gateway", url, "--rate", "10", "--duration", "1",
         "--workers", "2", "--worker-index", "1", "--start-at", str(time.time() - 30), "--quiet"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 2 and "after --start-at" in proc.stderr and "Traceback" not in proc.stderr


def test_processes_runs_the_workers_itself_and_prints_one_merged_result(trivial_server, tmp_path):
    url = trivial_server()
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, "-m", "matchlab.loadgen", "--gateway", url, "--stages", "1.5:20,1.5:60", "--start-rate", "20",
         "--processes", "3", "--json", str(out), "--quiet"],
        capture_output=True, text=True, timeout=90, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    single = LoadProfile.ramping(20, [(1.5, 20), (1.5, 60)])
    assert result["scheduled"] == result["sent"] == result["ok"] == len(list(single.send_offsets()))
    assert result["extra"]["workers"] == 3 and result["latency_ms"]["count"] == result["ok"]
    assert proc.stdout.count("target ") == 1 and "MATCHLAB-RESULT" not in proc.stdout  # one merged summary line


def test_workers_that_outlive_their_time_are_killed_not_left_behind():
    late = ["--gateway", "http://127.0.0.1:9", "--rate", "1", "--duration", "1", "--workers", "2", "--worker-index", "0",
            "--start-at", str(time.time() + 120), "--quiet"]  # sleeps until a start two minutes away
    with pytest.raises(subprocess.TimeoutExpired):
        run_worker_processes([late, late], timeout_s=3)
    left = [p for p in psutil.Process().children(recursive=True) if "matchlab.loadgen" in " ".join(p.cmdline())]
    assert not left


def test_processes_and_workers_do_not_mix():
    assert loadgen_main(["--gateway", "http://127.0.0.1:9", "--rate", "1", "--processes", "2", "--workers", "2"]) == 2
