"""The raw evidence a comparison needs is kept in results.json: client HdrHistograms, bucket vectors, identity."""

from __future__ import annotations

import json

from matchlab.compare.runs import window_histogram
from matchlab.experiment import registry
from matchlab.experiment.evidence import p99_shift
from matchlab.experiment.profiles import PROFILES
from matchlab.loadgen.results import decode_histogram
from matchlab.observe.histograms import Buckets
from matchlab.observe.verdicts import verdict_from_dict
from tests.synthetic_runs import OneWindowProm, synthetic_run, write_run


def test_results_json_keeps_client_histogram_buckets_rates_and_identity(tmp_path):
    doc = json.loads(write_run(tmp_path, seed=7).read_text())
    load = doc["experiments"]["A2"]["phases"][0]["load"]
    hist = decode_histogram(load["histogram"])
    assert hist.get_total_count() == load["ok"] > 0
    assert abs(hist.get_value_at_percentile(99) / 1000 - load["latency_ms"]["p99"]) < 0.01
    assert sum(s["ok"] for s in load["timeline"]) == load["ok"]
    p99 = next(c for c in doc["criteria"] if c["criterion"]["id"] == "A2.p99")
    buckets = Buckets.from_dict(p99["evidence"]["buckets"])
    assert buckets.n == p99["evidence"]["buckets"]["cumulative"][-1] > 0
    assert abs(buckets.quantile(0.99) - p99["observed"]) < 1e-12
    for fact in ("commit", "machine", "matchlab", "python", "complete"):
        assert doc["facts"][fact], fact
    assert doc["backend"] == "local" and doc["profile"] == "quick"


def test_verdict_evidence_survives_the_round_trip():
    record = synthetic_run(seed=3, seconds=20)
    for verdict in record.verdicts:
        back = verdict_from_dict(json.loads(json.dumps(verdict.to_dict())))
        assert back.evidence == verdict.evidence
        assert back.status is verdict.status and back.observed == verdict.observed


def test_buckets_to_dict_is_inverted_by_from_dict():
    b = Buckets.from_pairs([(0.001, 3.0), (0.01, 9.0), (float("inf"), 10.0)])
    assert Buckets.from_dict(json.loads(json.dumps(b.to_dict()))) == b


def test_a_rise_verdict_keeps_both_windows():
    prom = OneWindowProm([0.001 * (i % 10 + 1) for i in range(2000)])
    shift = p99_shift(prom, "a", (0.0, 10.0), (10.0, 20.0), 0.10)
    verdict = shift.verdict(registry.build(PROFILES["quick"])["A4.decoupling"], (0.0, 20.0))
    assert verdict.evidence["kind"] == "quantile_rise"
    assert Buckets.from_dict(verdict.evidence["base"]).n == 2000 == Buckets.from_dict(verdict.evidence["other"]).n



def test_the_client_histogram_of_the_measured_window_is_the_sum_of_its_seconds(tmp_path):
    phase = json.loads(write_run(tmp_path, seed=8, seconds=30).read_text())["experiments"]["A2"]["phases"][0]
    offset = phase["marks"]["measured"] - phase["start"]
    which, hist = window_histogram(phase)
    assert which == "measured"
    assert hist.n == sum(r["ok"] for r in phase["load"]["timeline"] if r["second"] >= offset) < phase["load"]["ok"]
    for row in phase["load"]["timeline"]:  # results without per-second histograms: the whole phase's
        row.pop("histogram")
    which, hist = window_histogram(phase)
    assert which == "whole phase" and hist.n == phase["load"]["ok"]
