"""The loop's precise timer: a timerfd armed at absolute perf_counter times."""

from __future__ import annotations

import select
import sys
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
