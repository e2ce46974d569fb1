"""The evidence cannot be changed by whoever reaches Prometheus: real Prometheus, real remote write.

The local Prometheus runs without the lifecycle API (nobody can POST
``/-/quit``), and the error-rate verdict counts only series carrying this
run's secret ``run`` label: series written under any guessable label (the
run folder's name, which order ids reveal) change nothing.
"""

from __future__ import annotations

import time

import httpx
import pytest

from matchlab.experiment.criteria import Context, error_rate
from matchlab.experiment.measures import decide
from matchlab.experiment.profiles import QUICK
from matchlab.experiment.record import ExperimentRecord, PhaseRecord
from matchlab.experiment.registry import build
from matchlab.loadgen.profile import LoadProfile
from matchlab.loadgen.remote_write import HEADERS, RemoteWriteExporter, encode_write_request
from matchlab.loadgen.run_label import run_label, run_matcher
from matchlab.loadgen.runner import json_request, run_load
from matchlab.observe.promql import PromClient

pytestmark = pytest.mark.integration

RUN_ID = "run-20260101-120000"  # what a run folder is called: anyone can guess it


def test_local_prometheus_has_no_lifecycle_api(prometheus):
    assert not any("lifecycle" in arg for arg in prometheus.process.argv)
    with open(f"/proc/{prometheus.process.pid}/cmdline", "rb") as f:
        assert b"--web.enable-lifecycle" not in f.read()
    for path in ("/-/quit", "/-/reload"):
        r = httpx.post(f"{prometheus.url}{path}", timeout=5)
        assert r.status_code == 403 and "Lifecycle API is not enabled" in r.text, (path, r.status_code, r.text)
    assert httpx.get(f"{prometheus.url}/-/ready", timeout=5).status_code == 200
    assert prometheus.url.startswith("http://127.0.0.1:")


def forge(url: str, labels: dict[str, str], errors: int) -> None:
    """What an intruder could do: write loadgen_requests_total series of their own."""
    series = [({"job": "loadgen", "__name__": "loadgen_requests_total", "target": "a", "status": "500", **labels},
               float(errors))]
    r = httpx.post(url, content=encode_write_request(series, int(time.time() * 1000)), headers=HEADERS, timeout=5)
    assert r.status_code // 100 == 2, r.text


def test_the_run_label_is_secret_per_process_and_stable_within_it():
    label = run_label(RUN_ID)
    assert label.startswith(f"{RUN_ID}-") and len(label) >= len(RUN_ID) + 17
    assert run_label(RUN_ID) == label and run_matcher(RUN_ID) == f'run="{label}"'
    assert run_label("another-run") != label


def test_error_rate_counts_only_this_run_s_series(prometheus, trivial_server):
    url = trivial_server()
    exporter = RemoteWriteExporter(prometheus.remote_write_url, {"run": run_label(RUN_ID), "experiment": "A2"})
    start = time.time()
    result = run_load(LoadProfile.constant(40, 3), lambda: json_request("a", f"{url}/orders", {"x": 1}),
                      exporter=exporter)
    end = time.time()
    assert result.ok == result.scheduled and exporter.pushes >= 1
    exp = ExperimentRecord("A2", "t", "ASR 1", "shard a direct", "none",
                           phases=[PhaseRecord("A2", start, end, None, 40.0, ["a"], result)])
    criterion = build(QUICK)["A2.error_rate"]
    prom = PromClient(prometheus.url)
    try:
        # Guessable labels: the folder name, with and without a made-up suffix, and no run label at all.
        for labels in ({"run": RUN_ID, "experiment": "A2"}, {"run": f"{RUN_ID}-0000", "experiment": "A2"},
                       {"experiment": "A2"}):
            forge(prometheus.remote_write_url, labels, errors=10 * result.ok)
        verdict = decide(criterion, error_rate(Context(prom, RUN_ID, QUICK), exp, ("a",), via_gateway=False))
        assert verdict.passed and verdict.observed == 0.0, verdict
        assert run_label(RUN_ID) in verdict.query
        # The same forgery under the real label is counted: the selector is what keeps it out.
        forge(prometheus.remote_write_url, {"run": run_label(RUN_ID), "experiment": "A2"}, errors=10 * result.ok)
        forged = decide(criterion, error_rate(Context(prom, RUN_ID, QUICK), exp, ("a",), via_gateway=False))
        assert not forged.passed and forged.observed > 0.5, forged
    finally:
        prom.close()
