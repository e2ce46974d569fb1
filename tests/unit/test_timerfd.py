"""The loop's precise timer: a timerfd armed at absolute perf_counter times."""

from __future__ import annotations

import select
import sys
import threading
import time

import pytest

from matchlab.loadgen.timerfd import open_timer

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prerequisite missing: Linux (timerfd)")


def readable(fd: int, timeout: float) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


def test_the_timer_fires_at_its_time_not_before_and_clears():
    timer = open_timer()
    assert timer is not None
    try:
        at = time.perf_counter() + 0.05
        timer.arm(at)
        assert not readable(timer.fd, 0.0)
        assert readable(timer.fd, 2.0)
        assert time.perf_counter() >= at  # never early, unlike the loop's millisecond timers
        timer.clear()
        assert not readable(timer.fd, 0.0)
        timer.clear()  # nothing to read: no error
    finally:
        timer.close()
    assert timer.fd == -1


def test_a_time_already_past_fires_at_once_and_rearming_moves_it():
    timer = open_timer()
    try:
        timer.arm(time.perf_counter() - 1.0)
        assert readable(timer.fd, 0.5)
        timer.clear()
        timer.arm(time.perf_counter() + 10.0)
        timer.arm(time.perf_counter() + 0.01)  # re-armed earlier: the later time is forgotten
        assert readable(timer.fd, 2.0)
    finally:
        timer.close()


def test_a_failing_request_source_ends_the_run_with_its_error_instead_of_hanging():
    from matchlab.loadgen.profile import LoadProfile
    from matchlab.loadgen.runner import json_request, run_load
    from matchlab.stack.probes import free_port

    calls = 0

    def source():
        nonlocal calls
        calls += 1
        if calls == 3:
            raise ValueError("source broke")
        return json_request("t", f"http://127.0.0.1:{free_port()}/orders", {"x": 1})  # nobody listens: refused

    outcome: list[BaseException] = []

    def run() -> None:
        try:
            run_load(LoadProfile.constant(50, 5), source)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the run hung after its request source failed"
    assert calls == 3 and len(outcome) == 1 and "source broke" in str(outcome[0]), outcome
