"""The docker backend on a real engine: limits, loopback-only ports, a journal that survives kill -9, the
broker's outage, logs in the run folder, and teardown that leaves nothing of the run behind (Ctrl-C too)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from matchlab.containers.backend import DockerBackend
from matchlab.containers.ledger import ResourceLedger
from matchlab.containers.leftovers import leftovers as all_leftovers
from matchlab.images.engine import engine_client, engine_problem
from matchlab.loadgen.flow import OrderFlow, seed_orders
from matchlab.stack.spec import Topology
from matchlab.waiting import wait_until
from tests.integration.test_shard_recovery import SYM, assert_acknowledged_book, send_until_refused

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
LOAD_BEFORE_KILL_S = 1.0
STACK_UP_TIMEOUT_S = 300  # a first run builds the images


def leftovers(client, run: str) -> list[str]:
    """Everything on the engine that bears the run's label."""
    return [line for line in all_leftovers(client) if run in line]


@pytest.fixture(scope="module")
def engine():
    problem = engine_problem()
    if problem:
        pytest.skip(f"prerequisite: a Docker engine ({problem})")
    client = engine_client()
    yield client
    client.close()


@pytest.fixture(scope="module")
def single(engine, tmp_path_factory):
    reports = tmp_path_factory.mktemp("reports")
    backend = DockerBackend(reports)
    run_dir = reports / "run-docker-test" / "single"
    endpoints = backend.start(Topology.SINGLE, run_dir)
    try:
        yield backend, endpoints, run_dir
    finally:
        backend.stop()
        assert leftovers(engine, backend.run) == []
        assert not ResourceLedger(reports / "docker-resources.json").entries()
        assert "shard a up on 0.0.0.0:8080" in (run_dir / "logs" / "me-shard-a.log").read_text()


def test_every_container_has_its_budget_and_publishes_on_loopback_only(single):
    backend, _, _ = single
    for name, container in backend._containers.items():
        host = container.attrs["HostConfig"]
        assert host["NanoCpus"] > 0 and host["Memory"] > 0, name
        bound = [b["HostIp"] for bindings in host["PortBindings"].values() for b in bindings]
        assert bound and set(bound) == {"127.0.0.1"}, (name, bound)
    shard = backend._containers["me-shard-a"].attrs["HostConfig"]
    assert shard["NanoCpus"] == min(2, os.cpu_count()) * 10**9 and shard["Memory"] == 1 << 30


def test_kill_9_and_restart_lose_no_acknowledged_order(single):
    backend, ep, _ = single
    url = ep.shards["a"]
    seed = seed_orders(SYM, 200, 20)
    assert httpx.post(f"{url}/admin/reset", headers=ep.admin_headers, timeout=10).status_code == 200
    assert httpx.post(f"{url}/seed", json={"orders": seed}, headers=ep.admin_headers).status_code == 200
    acked: list[dict] = []
    in_flight: list[dict] = []
    worker = threading.Thread(target=send_until_refused, args=(url, OrderFlow([SYM], seed=17), acked, in_flight))
    worker.start()
    time.sleep(LOAD_BEFORE_KILL_S)  # fault injection point, not a wait for state
    backend.kill_service("me-shard-a")
    worker.join(10)
    assert len(acked) > 50, "the load did not get going before the kill"
    backend.restart_service("me-shard-a")  # the same container, its journal on the named volume
    assert_acknowledged_book(httpx.get(f"{url}/book/{SYM}").json(), seed, acked, in_flight)


def test_a_paused_broker_does_not_stop_the_shard_taking_orders(single):
    backend, ep, _ = single
    backend.pause_broker()
    try:
        assert backend._containers["broker"].reload() or backend._containers["broker"].status == "paused"
        order = {"orderId": f"pause-{time.time_ns()}", "symbol": SYM, "side": "BUY", "type": "LIMIT", "price": 1,
                 "quantity": 1}
        r = httpx.post(f"{ep.shards['a']}/orders", json=order, timeout=5)
        assert r.status_code == 200 and r.json()["status"] == "ACCEPTED"
    finally:
        backend.resume_broker()
    backend.resume_broker()  # twice, as A4 does (once more in its finally): no error
    backend.pause_broker()
    backend.pause_broker()
    backend.resume_broker()
    assert backend._containers["broker"].reload() or backend._containers["broker"].status == "running"


def test_ctrl_c_mid_session_leaves_nothing_of_the_run(engine, tmp_path):
    reports = tmp_path / "reports"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "experiments/test_smoke.py", "--backend", "docker",
         "--reports-dir", str(reports), "-k", "healthy"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    ledger = ResourceLedger(reports / "docker-resources.json")
    try:
        # Interrupt once the stack's containers exist (the ledger names them before they are created).
        wait_until(lambda: any(e.kind == "container" for e in ledger.entries()) or proc.poll() is not None,
                   STACK_UP_TIMEOUT_S, "the session to create its first container", interval=0.2)
        runs = ledger.runs()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert runs, out
    assert [line for run in runs for line in leftovers(engine, run)] == [], out
    assert not ledger.entries()
