"""The experiment report: drawn from a real (small) run, phases where they were, written when interrupted.

Charts are inline SVG whose drawn elements carry ids (``series-N``,
``phase-NAME-START-END``), so these tests count what was drawn instead of
assuming it. Grafana annotations are posted to a small fake of its HTTP API.
"""

from __future__ import annotations

import base64
import json
import re
import signal
import threading
import typing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from matchlab.compare.runs import IncompleteRunError, load_results
from matchlab.experiment.profiles import QUICK
from matchlab.experiment.record import ExperimentRecord, RunRecord
from matchlab.experiment.runner import ExperimentRunner, Route
from matchlab.history.index import read_index
from matchlab.loadgen.profile import LoadProfile
from matchlab.loadgen.run_label import run_matcher
from matchlab.observe.panels import PANELS
from matchlab.reporting.annotations import post_annotations
from matchlab.reporting.charts import experiment_charts
from matchlab.reporting.report import render_report
from matchlab.stack.spec import Topology
from matchlab.stack.stack import Stack
from tests.integration.test_harness import run_pytest

pytestmark = pytest.mark.integration

SHARD_A = Route(("a",), via_gateway=False)


@pytest.fixture(scope="module")
def small_run(stack_pool) -> tuple[ExperimentRecord, list[dict]]:
    """Two short phases on shard a: a warm-up-marked one and one with an "outage" mark."""
    single_stack: Stack = stack_pool.get(Topology.SINGLE)
    r = ExperimentRunner(single_stack, QUICK, "run-report-test", progress=lambda line: None)
    exp = ExperimentRecord("R1", "report test", "ASR 1", SHARD_A.label, r.reset_and_seed(["a"], 100, 10))
    r.drive(exp, "steady", SHARD_A, LoadProfile.constant(40, 14), r.source(SHARD_A, "R1s"), None)
    r.drive(exp, "fault", SHARD_A, LoadProfile.constant(40, 16), r.source(SHARD_A, "R1f"), None,
            marks={"outage": 6, "resumed": 13})  # longer than the 5 s remote-write interval
    r.settle(["a"])
    return exp, experiment_charts(single_stack.prometheus(), exp)


def test_every_chart_of_a_small_run_drew_data_counted_from_the_svg(small_run):
    _exp, charts = small_run
    assert [c["title"] for c in charts[:6]] == [f"Panel {p.id}: {p.title}" for p in PANELS]
    for chart in charts:
        drawn = len(re.findall(r'id="series-\d+"', chart["svg"]))
        assert drawn == chart["series"] and drawn > 0, (chart["title"], drawn, chart["series"])


def test_phase_boundaries_and_marks_are_drawn_where_the_record_puts_them(small_run):
    exp, charts = small_run
    time_charts = [c for c in charts if "percentiles" not in c["title"]]
    for chart in time_charts:
        for phase in exp.phases:
            assert f'id="phase-{phase.name}-{phase.start:.3f}-{phase.end:.3f}"' in chart["svg"], chart["title"]
            assert f'id="measured-{phase.name}-{phase.marks["measured"]:.3f}-{phase.end:.3f}"' in chart["svg"]
        assert f'id="outage-fault-{exp.phase("fault").marks["outage"]:.3f}"' in chart["svg"], chart["title"]
    assert exp.phase("steady").marks["measured"] == pytest.approx(exp.phase("steady").start + QUICK.warmup_exclusion_s)


def test_report_lays_out_every_experiment_with_its_panels(small_run):
    exp, charts = small_run
    record = RunRecord("local", "quick", QUICK.scaling_note, {"commit": "abc", "machine": "2 cores"}, {"R1": exp})
    html = render_report(record, {"R1": charts}, complete=True, grafana=None, grafana_note="absent (no binary)")
    assert html.count("<svg") == len(charts) and 'id="R1"' in html
    assert "Grafana</b>: not part of this stack: absent (no binary)" in html
    for line in ("<b>profile</b>: quick", "<b>backend</b>: local", "<b>commit</b>: abc", "<b>CPU budgets</b>"):
        assert line in html
    assert "http://" not in html.split("<svg")[0].replace("http://www.w3.org", "")  # self-contained: no fetches
    incomplete = render_report(record, {"R1": charts}, complete=False, grafana=None)
    assert "Incomplete run" in incomplete and "Incomplete run" not in html


class _FakeGrafana(BaseHTTPRequestHandler):
    posted: typing.ClassVar[list[dict]] = []
    auth = "Basic " + base64.b64encode(b"admin:secret").decode()

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Authorization") != self.auth:
            self.send_response(401)
            self.end_headers()
            return
        if self.path != "/api/annotations":
            self.send_response(404)
            self.end_headers()
            return
        self.posted.append(json.loads(body))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"message":"Annotation added","id":1}')

    def log_message(self, *args):
        pass


def test_phases_are_posted_as_grafana_range_annotations(small_run):
    exp, _ = small_run
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeGrafana)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        n = post_annotations(url, ("admin", "secret"), "run-x", exp)
        with pytest.raises(RuntimeError, match="401"):
            post_annotations(url, ("admin", "wrong"), "run-x", exp)
    finally:
        server.shutdown()
    posted = _FakeGrafana.posted
    assert n == len(posted) == 3 + 4  # each phase, its warm-up and its measured window; and the one outage
    outage = [a for a in posted if "broker outage" in a["tags"]]
    fault = exp.phase("fault")
    assert len(outage) == 1 and outage[0]["time"] == int(fault.marks["outage"] * 1000)
    assert outage[0]["timeEnd"] == int(fault.marks["resumed"] * 1000)
    assert all(a["dashboardUID"] == "me-experiment" and "run:run-x" in a["tags"] for a in posted)


def test_an_interrupted_run_still_writes_its_report_marked_incomplete(tmp_path: Path):
    reports = tmp_path / "reports"
    proc = run_pytest(["experiments/test_asr1.py", "-m", "asr1", "-k", "a1 or a2_normal", "--profile", "quick", "-q", "-s"], reports,
                      env={"PYTHONUNBUFFERED": "1"})
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if "experiment A2" in line:  # A1 is recorded; interrupt A2 mid-run
                break
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
        out = "".join(seen) + out
    finally:
        if proc.poll() is None:
            proc.kill()
    report = next(reports.glob("run-*/report.html"), None)
    assert report is not None, out
    html = report.read_text()
    assert "Incomplete run" in html and 'id="A1"' in html
    results = json.loads(next(reports.glob("run-*/results.json")).read_text())
    assert results["facts"]["complete"].startswith("no"), results["facts"]
    with pytest.raises(IncompleteRunError, match="incomplete run"):  # compare refuses it
        load_results(next(reports.glob("run-*")))
    [entry] = read_index(reports)  # and the history says so
    assert entry["complete"].startswith("no")


def test_prometheus_keeps_the_phases_as_a_window_series(small_run, stack_pool):
    exp, _ = small_run
    prom = stack_pool.get(Topology.SINGLE).prometheus()
    fault = exp.phase("fault")
    sel = f'loadgen_window{{{run_matcher("run-report-test")},experiment="R1",phase="fault",window="outage"}}'
    samples = prom.query_matrix(f"{sel}[{round(fault.end - fault.start) + 10}s]", at=fault.end + 5)
    assert samples, f"no {sel} in Prometheus: {prom.query_matrix('loadgen_window[2m]', at=fault.end + 5)}"
    times = [t for s in samples for t, _ in s.points]
    assert fault.marks["outage"] - 1 <= min(times) and max(times) <= fault.marks["resumed"] + 2, (times, fault.marks)
