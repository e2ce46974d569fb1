"""The `matchlab` command's logic that needs no running stack: reports, books, errors, the stack record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from matchlab.cli.main import main
from matchlab.cli.trading import book_lines
from matchlab.experiment.profiles import QUICK
from matchlab.experiment.record import RunRecord
from matchlab.experiment.registry import build
from matchlab.observe.verdicts import judge
from matchlab.stack.backend import Backend
from matchlab.stack.recorded import RecordedStack
from matchlab.stack.spec import Endpoints, Topology
from matchlab.stack.state import ServiceRecord, StackRecord, read_state, write_state


def write_run(run_dir: Path, p99_s: float) -> None:
    record = RunRecord(backend="local", profile="quick", scaling_note="quick profile", facts={"cores": "2"})
    criteria = build(QUICK)
    record.add_verdicts([judge(criteria["A2.p99"], p99_s, "q_p99"), judge(criteria["A2.error_rate"], 0.0, "q_err")])
    record.write_json(run_dir / "results.json")


def test_report_rerenders_the_verdicts_and_statuses_of_a_run(tmp_path: Path, capsys):
    write_run(tmp_path / "run-1", p99_s=0.35)
    html = tmp_path / "r.html"
    assert main(["report", str(tmp_path / "run-1"), "--html", str(html)]) == 0
    out = capsys.readouterr().out
    assert "ASR 1: FAIL (quick)" in out
    assert "[FAIL] A2 p99 match latency (shard a): < 200.00 ms | observed 350.00 ms | query: q_p99" in out
    assert "[PASS] A2 error rate" in out
    assert "350.00 ms" in html.read_text() and "<html>" in html.read_text()


def test_report_notes_a_status_that_todays_rules_decide_differently(tmp_path: Path, capsys):
    write_run(tmp_path / "run-1", p99_s=0.05)
    doc = json.loads((tmp_path / "run-1" / "results.json").read_text())
    doc["asr"][0]["status"] = "FAIL"
    (tmp_path / "run-1" / "results.json").write_text(json.dumps(doc))
    assert main(["report", str(tmp_path / "run-1")]) == 0
    # Two of ASR 1's criteria, both passing: today's rules say the others are missing, so not PASS.
    assert "note: ASR 1 was FAIL when the run ended; today's rules say INCONCLUSIVE (quick)" in capsys.readouterr().out


def test_report_shows_results_of_another_verdict_format_as_stored(tmp_path: Path, capsys):
    doc = {"backend": "local", "profile": "quick", "asr": [{"asr": "ASR 1", "status": "PASS", "reason": "all pass"}],
           "criteria": [{"criterion": {"id": "A2.p99", "asr": "ASR 1", "experiment": "A2", "name": "p99"},
                         "status": "PASS", "observed_text": "9.22 ms", "query": "q"}]}
    (tmp_path / "results.json").write_text(json.dumps(doc))
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ASR 1: PASS (all pass)\n[PASS] A2 p99 | observed 9.22 ms | query: q\nnote: shown as stored" in out


def test_report_of_a_folder_without_results_is_one_line(tmp_path: Path, capsys):
    assert main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "results.json" in err and "No such file" in err


def test_book_lines_show_depth_per_level_asks_above_bids():
    snapshot = {"symbol": "S", "asks": [[101, [["a1", 3]]], [102, [["a2", 1], ["a3", 2]]], [103, [["a4", 9]]]],
                "bids": [[100, [["b1", 5], ["b2", 2]]]]}
    lines = book_lines(snapshot, levels=2)
    assert [line.split()[:3] for line in lines] == [["ASK", "102", "3"], ["ASK", "101", "3"], ["BID", "100", "7"]]
    assert lines[-1].endswith("(2 orders)")
    assert book_lines({"asks": [], "bids": []}, 5) == ["  (empty)"]


@pytest.mark.parametrize(
    ("argv", "code", "stream", "text"),
    [
        (["down"], 0, "out", "nothing to tear down"),
        (["status"], 1, "err", "no stack is up"),
        (["order", "TEST-ASSET-A", "buy", "limit", "1", "100"], 1, "err", "start one with `matchlab up`"),
        (["broker", "pause"], 1, "err", "no stack is up"),
        (["up", "--backend", "k8s"], 2, "err", "needs --kube-context NAME"),
        (["up", "--expose-on", "0.0.0.0"], 2, "err", "--expose-on applies to --backend k3d"),
    ],
)
def test_nothing_up_gives_one_line_and_an_exit_code(tmp_path: Path, capsys, argv, code, stream, text):
    assert main([*argv, "--reports-dir", str(tmp_path)]) == code
    captured = getattr(capsys.readouterr(), stream).strip()
    assert text in captured and "\n" not in captured


def test_a_recorded_stack_round_trips_and_is_a_backend(tmp_path: Path):
    endpoints = Endpoints(shards={"a": "http://127.0.0.1:1"}, shard_metrics={"a": "http://127.0.0.1:2/metrics"},
                          gateway=None, gateway_metrics=None, prometheus="http://127.0.0.1:3", broker="127.0.0.1:4")
    service = ServiceRecord("me-shard-a", 999_999_1, ["python", "-m", "matchlab.shard"], str(tmp_path / "a.log"),
                            {"http": "http://127.0.0.1:1/health"}, "http://127.0.0.1:1", {"SHARD_ID": "a"})
    write_state(tmp_path, StackRecord("local", Topology.SINGLE, str(tmp_path), endpoints, [service]))
    record = read_state(tmp_path)
    assert record.endpoints == endpoints and record.services == [service] and record.alive() == []
    assert isinstance(RecordedStack(record, tmp_path), Backend)


def stale_stack(tmp_path: Path) -> None:
    """A stack.json whose processes are long gone (a machine rebooted, a kill -9 of everything)."""
    endpoints = Endpoints(shards={"a": "http://127.0.0.1:1"}, shard_metrics={"a": "http://127.0.0.1:2/metrics"},
                          gateway=None, gateway_metrics=None, prometheus="http://127.0.0.1:3", broker="127.0.0.1:4")
    service = ServiceRecord("me-shard-a", 999_999_1, ["python", "-m", "matchlab.shard"], str(tmp_path / "a.log"),
                            {"http": "http://127.0.0.1:1/health"}, "http://127.0.0.1:1", {"SHARD_ID": "a"})
    write_state(tmp_path, StackRecord("local", Topology.SINGLE, str(tmp_path), endpoints, [service]))


def test_a_stale_record_is_named_with_what_to_do_and_down_clears_it(tmp_path: Path, capsys):
    stale_stack(tmp_path)
    assert main(["status", "--reports-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert "no longer runs (a stale record)" in err and "`matchlab down` clears it" in err and "\n" not in err
    assert main(["down", "--reports-dir", str(tmp_path)]) == 0
    assert read_state(tmp_path) is None
