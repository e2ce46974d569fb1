"""The CI check on results.json: complete evidence passes whatever the verdicts, gaps fail."""

from __future__ import annotations

import json
from pathlib import Path

from matchlab.experiment.check import EXPECTED_CRITERIA, main


def write(tmp: Path, doc: dict, name: str = "run-20260101-000000") -> None:
    (tmp / name).mkdir(parents=True)
    (tmp / name / "results.json").write_text(json.dumps(doc))


def criterion(asr: str, observed, verdict: str = "PASS") -> dict:
    return {"criterion": {"asr": asr, "experiment": "X", "name": "n"}, "observed": observed, "verdict": verdict,
            "detail": "no data: the query returned nothing" if observed is None else ""}


def doc(asr: str, n: int, observed=0.1, status="FAIL") -> dict:
    return {"asr": [{"asr": asr, "status": status, "reason": "r"}], "criteria": [criterion(asr, observed, "FAIL")] * n}


def test_complete_results_pass_even_with_fail_verdicts(tmp_path, capsys):
    write(tmp_path, doc("ASR 1", EXPECTED_CRITERIA["ASR 1"]))
    assert main([str(tmp_path), "--asr", "ASR 1"]) == 0
    assert "ASR 1: FAIL" in capsys.readouterr().out


def test_missing_value_or_criterion_fails(tmp_path):
    write(tmp_path, doc("ASR 1", EXPECTED_CRITERIA["ASR 1"], observed=None))
    assert main([str(tmp_path), "--asr", "ASR 1"]) == 1
    other = tmp_path / "b"
    write(other, doc("ASR 1", EXPECTED_CRITERIA["ASR 1"] - 1))
    assert main([str(other), "--asr", "ASR 1"]) == 1
    assert main([str(other), "--asr", "ASR 2"]) == 1  # no ASR 2 status at all


def test_newest_run_is_checked_and_absence_fails(tmp_path):
    assert main([str(tmp_path)]) == 1
    write(tmp_path, doc("ASR 1", 1), "run-20260101-000000")
    write(tmp_path, doc("ASR 1", EXPECTED_CRITERIA["ASR 1"]), "run-20260102-000000")
    assert main([str(tmp_path), "--asr", "ASR 1"]) == 0
