"""GATEWAY_WORKERS=N: N real gateway processes on one port in front of a real shard, supervised."""

from __future__ import annotations

import os
import re
import signal
import time

import httpx
import psutil
import pytest

from matchlab.promtext import counter_total, scrape

pytestmark = pytest.mark.integration

WORKERS = 3
ORDERS = 60


def order(oid: str) -> dict:
    return {"orderId": oid, "symbol": "TEST-ASSET-A", "side": "BUY", "type": "LIMIT", "price": 14_000, "quantity": 5}


def worker_metrics_ports(gateway) -> dict[int, int]:
    """PID -> metrics port of each worker, from the supervisor's start-up line."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = re.findall(r"PID (\d+) \(metrics (\d+)\)", gateway.process.log_path.read_text())
        if len(found) == WORKERS:
            return {int(pid): int(port) for pid, port in found}
        time.sleep(0.1)
    raise AssertionError(f"no start-up line naming {WORKERS} workers in {gateway.process.log_path}")


def gone(pids, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids):
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def supervised(shard_factory, gateway_factory):
    shard = shard_factory("a")
    gateway = gateway_factory({"a": shard.url}, GATEWAY_WORKERS=str(WORKERS))
    return shard, gateway, worker_metrics_ports(gateway)


def test_workers_share_the_port_and_their_metrics_merge(supervised):
    shard, gateway, workers = supervised
    for i in range(ORDERS):  # a new connection each time, so the kernel spreads them over the workers
        with gateway.client() as c:
            r = c.post("/orders", json=order(f"w-{i}"))
            assert r.status_code == 200, r.text
    per_worker = [counter_total(scrape(f"http://127.0.0.1:{port}/metrics"), "gw_requests", shard="a", status="2xx")
                  for port in workers.values()]
    assert sum(per_worker) == ORDERS and sum(1 for n in per_worker if n) >= 2, per_worker
    merged = scrape(gateway.metrics_url)
    assert counter_total(merged, "gw_requests", shard="a", status="2xx") == ORDERS
    assert counter_total(scrape(shard.metrics_url), "me_orders_received") == ORDERS
    health = httpx.get(f"http://127.0.0.1:{gateway.metrics_port}/health").json()
    assert health == {"status": "UP", "component": "edge-gateway", "workers": WORKERS, "alive": WORKERS}
    assert sorted(p.pid for p in psutil.Process(gateway.process.pid).children()) == sorted(workers)


def test_stopping_the_supervisor_stops_every_worker(supervised):
    _, gateway, workers = supervised
    assert gateway.process.stop() == 0
    assert gone(workers)


def test_a_dead_worker_takes_the_gateway_down_with_exit_1(supervised):
    _, gateway, workers = supervised
    os.kill(next(iter(workers)), signal.SIGKILL)
    deadline = time.monotonic() + 20
    while gateway.process.running() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gateway.process.stop() == 1
    assert gone(workers)
    assert "exited with -9: stopping the other workers" in gateway.process.log_path.read_text()


def test_workers_end_when_the_supervisor_is_killed(supervised):
    _, gateway, workers = supervised
    os.kill(gateway.process.pid, signal.SIGKILL)  # the supervisor alone: no chance to stop them itself
    assert gone(workers)


def test_the_gateways_cpu_and_budget_cover_its_workers(supervised):
    from matchlab.experiment.scaling import cpu_seconds
    from matchlab.stack.cpu_budget import CpuBudgets

    _, gateway, workers = supervised
    for i in range(ORDERS):
        with gateway.client() as c:
            assert c.post("/orders", json=order(f"c-{i}")).status_code == 200
    own = psutil.Process(gateway.process.pid).cpu_times()
    of_workers = sum(psutil.Process(p).cpu_times().user + psutil.Process(p).cpu_times().system for p in workers)
    assert of_workers > 0
    # Read last, so never less (but for float rounding of the 10 ms clock ticks summed above).
    assert cpu_seconds({"gw": gateway.process.pid})["gw"] >= own.user + own.system + of_workers - 1e-6
    budgets = CpuBudgets(f"gwtest{os.getpid()}")
    why = budgets.available()
    if why:
        pytest.skip(f"prerequisite missing: CPU budgets need root and a writable cgroup cpu controller: {why}")
    try:
        group = budgets.limit("edge-gateway", gateway.process.pid, 0.5)
        members = {int(p) for p in (group / "cgroup.procs").read_text().split()}
        assert {gateway.process.pid, *workers} <= members
    finally:
        gateway.process.stop()
        budgets.close()
