"""A CPU budget caps a real busy process at its share of a core, and the kernel counts the throttling."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

from matchlab.stack.cpu_budget import CpuBudgets

pytestmark = pytest.mark.integration

BUDGET = 0.25
MEASURE_S = 2.0


def test_a_busy_process_gets_its_budget_and_no_more():
    budgets = CpuBudgets(f"test-{time.time_ns()}")
    why = budgets.available()
    if why:
        pytest.skip(f"prerequisite missing: cgroup CPU budgets cannot be enforced here: {why}")
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        budgets.limit("spinner", proc.pid, BUDGET)
        p = psutil.Process(proc.pid)
        before = sum(p.cpu_times()[:2])
        time.sleep(MEASURE_S)
        used = (sum(p.cpu_times()[:2]) - before) / MEASURE_S
        throttled = budgets.throttling("spinner")
    finally:
        proc.kill()
        proc.wait()
        budgets.close()
    assert 0.1 < used <= BUDGET * 1.2, f"a spinning process used {used:.2f} CPU under a {BUDGET} budget"
    assert throttled is not None and throttled.throttled_periods > 0 and throttled.ratio > 0.5, throttled
    assert not any(p.name.startswith("matchlab-test-") for p in (budgets.found[1]).iterdir())  # cleaned up


def test_a_non_positive_budget_is_refused():
    with pytest.raises(ValueError, match="positive"):
        CpuBudgets("x").limit("svc", 1, 0)
