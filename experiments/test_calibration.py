"""Calibration (marker ``calibration``): A4's and B5's comparisons where the truth is known.

A sham runs the very cycles with nothing changed between the arms (the broker
never paused; shard b "loaded" at zero): its verdict may read PASS or
INCONCLUSIVE, never FAIL. The power check injects a match delay in the
outage arms only, sized to raise p99 by several times A4's bar: A4 must FAIL.
One run of each is a smoke check of the method; ``benchmarks/bench_calibration.py``
repeats them and prints the rate of wrong decisions.
"""

from __future__ import annotations

import pytest

from matchlab.experiment.suite import Suite
from matchlab.observe.verdicts import Status

pytestmark = pytest.mark.calibration


def test_a_sham_outage_never_reads_fail(suite: Suite):
    v = suite.verdict("A4-sham.decoupling")
    assert not v.no_data, v.message()
    assert v.status is not Status.FAIL, v.message()


def test_a_delay_injected_in_the_outage_arms_fails_a4(suite: Suite):
    v = suite.verdict("A4-power.decoupling")
    assert v.status is Status.FAIL, v.message()


def test_a_sham_load_on_shard_b_never_fails_isolation(suite: Suite):
    v = suite.verdict("B5-sham.isolation")
    assert not v.no_data, v.message()
    assert v.status is not Status.FAIL, v.message()
