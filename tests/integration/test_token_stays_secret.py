"""A smoke-sized run on the local stack, then a grep of everything it left: the admin token is nowhere.

The run goes through the harness' own code paths - stack start, reset,
seeding through the runner, a short load phase with remote write, an
error-rate verdict, ``results.json`` and the HTML summary - with every
harness log line captured at DEBUG. The token may live in the services'
environment only.
"""

from __future__ import annotations

import logging

import httpx
import pytest

from matchlab.errors import PrerequisiteError
from matchlab.experiment.criteria import Context, error_rate
from matchlab.experiment.measures import decide
from matchlab.experiment.profiles import QUICK
from matchlab.experiment.record import ExperimentRecord, RunRecord
from matchlab.experiment.registry import build
from matchlab.experiment.runner import ExperimentRunner, Route
from matchlab.loadgen.profile import LoadProfile
from matchlab.reporting.summary import summary_html
from matchlab.stack.local import LocalBackend
from matchlab.stack.prometheus import find_binary
from matchlab.stack.spec import Topology
from matchlab.stack.stack import Stack

pytestmark = pytest.mark.integration


def test_the_admin_token_never_reaches_logs_reports_or_results(tmp_path, caplog):
    try:
        find_binary()
    except PrerequisiteError as exc:
        pytest.skip(f"prerequisite missing: {exc}")
    reports = tmp_path / "reports"
    run_dir = reports / "run-token-check"
    record = RunRecord(backend="local", profile="quick", scaling_note="token check")
    backend = LocalBackend(reports)
    token = backend.admin_token
    with caplog.at_level(logging.DEBUG), Stack(backend, Topology.SINGLE, run_dir / "single") as stack:
        ep = stack.endpoints
        assert ep.admin_token == token and token not in repr(ep)
        # The services hold it: without it, no reset; with it (as the runner sends it), reset and seed work.
        assert httpx.post(f"{ep.shards['a']}/admin/reset", timeout=10).status_code == 401
        runner = ExperimentRunner(stack, QUICK, run_dir.name, progress=logging.getLogger("progress").info)
        exp = ExperimentRecord("A2", "token check", "ASR 1", "shard a direct", runner.reset_and_seed(["a"], 20, 4))
        route = Route(("a",), via_gateway=False)
        runner.drive(exp, "A2", route, LoadProfile.constant(20, 3), runner.source(route, "tok"), None)
        record.experiments["A2"] = exp
        ctx = Context(stack.prometheus(), run_dir.name, QUICK)
        record.add_verdicts([decide(build(QUICK)["A2.error_rate"], error_rate(ctx, exp, ("a",), via_gateway=False))])
        record.facts.update(backend.facts())
        record.log_tails = backend.log_tails()
        # Even a failing admin call's error text (what a report would show) carries no token.
        with pytest.raises(httpx.HTTPStatusError) as failed:
            httpx.post(f"{ep.shards['a']}/admin/reset", headers={"Authorization": "Bearer wrong-token-xxxxxxxx"},
                       timeout=10).raise_for_status()
        assert token not in str(failed.value)
    record.write_json(run_dir / "results.json")
    (run_dir / "report.html").write_text(summary_html(record) + "\n".join(record.log_tails.values()))

    files = [p for p in reports.rglob("*") if p.is_file()]
    assert any(p.name == "results.json" for p in files) and any(p.suffix == ".log" for p in files)
    assert exp.phases[0].load.ok == exp.phases[0].load.scheduled > 0
    leaked = [str(p.relative_to(reports)) for p in files if token.encode() in p.read_bytes()]
    assert not leaked, f"the admin token was written to {leaked}"
    assert caplog.records and not [r for r in caplog.records if token in r.getMessage()]
