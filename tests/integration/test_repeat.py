"""``--repeat N`` on the real local stack: N repetitions in one session, one run with N samples, compared as such.

A tiny experiment (a few seconds of load on shard a, judged by the real A2
p99 criterion from Prometheus's buckets) runs through ``Suite`` twice on the
shared single-shard stack: each repetition resets and seeds the book again,
progress says which repetition runs, each repetition is judged, results.json
keeps both, and ``compare`` reads every sample.
"""

from __future__ import annotations

import json
import re

import pytest

from matchlab.compare.runs import compare_runs, load_results, samples, window_histogram
from matchlab.experiment import catalog
from matchlab.experiment import suite as suite_module
from matchlab.experiment.catalog import SHARD_A, Experiment, Search
from matchlab.experiment.profiles import QUICK
from matchlab.experiment.record import ExperimentRecord, RunRecord
from matchlab.experiment.registry import build
from matchlab.experiment.suite import Suite
from matchlab.loadgen.profile import LoadProfile
from matchlab.stack.spec import Topology

pytestmark = pytest.mark.integration

REPEAT = 2


def run_t1(s: Suite) -> ExperimentRecord:
    r = s.runner(Topology.SINGLE)
    exp = ExperimentRecord("T1", "repeat test", "ASR 1", SHARD_A.label, r.reset_and_seed(["a"], 100, 10))
    r.drive(exp, "T1", SHARD_A, LoadProfile.constant(40, 10), r.source(SHARD_A, "T1"), None)
    r.settle(["a"])
    return exp


def test_repeat_runs_an_experiment_n_times_and_compare_uses_every_sample(stack_pool, tmp_path, monkeypatch):
    # T1: a 10 s phase on shard a, judged by A2's p99 measure (its window: the phase after 5 s of warm-up).
    monkeypatch.setitem(catalog.EXPERIMENTS, "T1", Experiment("T1", "repeat test", "ASR 1", Topology.SINGLE,
                                                              Search(run_t1)))
    monkeypatch.setattr(suite_module, "criteria_of",
                        lambda profile, exp_id: [build(profile)["A2.p99"]] if exp_id == "T1" else [])
    lines: list[str] = []
    record = RunRecord("local", "quick", QUICK.scaling_note, {"complete": "yes"})
    suite = Suite(stack_pool.get, record, QUICK, "run-repeat-test", lines.append, repeat=REPEAT)
    (verdict,) = suite.verdicts("T1")

    exp = record.experiments["T1"]
    assert len(exp.samples) == REPEAT
    first, second = exp.samples
    assert first.end <= second.start and second.seed, "the repetitions ran one after the other, each seeded"
    assert [line for line in lines if "--- experiment" in line] == [
        f"[repetition {k}/{REPEAT}] --- experiment T1 (quick profile) ---" for k in range(1, REPEAT + 1)]
    assert f"worst of {REPEAT} repetitions" in verdict.detail, verdict.message()
    assert [(r["evidence"] or {}).get("kind") for r in verdict.evidence["repetitions"]] == ["quantile"] * REPEAT, (
        verdict.message())

    path = tmp_path / "results.json"
    record.write_json(path)
    doc = load_results(path)
    assert doc["experiments"]["T1"]["samples"] == REPEAT and len(doc["experiments"]["T1"]["repetitions"]) == 1
    rows = {r.what: r for r in compare_runs(doc, json.loads(path.read_text()))}
    (p50,) = [row for what, row in rows.items() if what.startswith("T1 client p50")]
    assert f"{REPEAT} vs {REPEAT} repetitions" in p50.test and p50.change.delta == 0
    each = [window_histogram(e["phases"][0])[1].n for e in samples(doc["experiments"]["T1"])]
    pooled_n = int(re.search(r"n ([\d,]+) vs", p50.test).group(1).replace(",", ""))
    assert len(each) == REPEAT and min(each) > 0 and pooled_n == sum(each), (p50.test, each)  # every sample
    assert f"{REPEAT} vs {REPEAT} repetitions" in rows["T1 answered orders/s"].test
    server = rows["A2.p99 (p99 match latency (shard a))"]
    assert f"{REPEAT} vs {REPEAT} repetitions" in server.test and server.reading == "~"
