"""The CI check on results.json: complete evidence passes whatever the verdicts, gaps fail."""

from __future__ import annotations

import json
from pathlib import Path

from matchlab.experiment.check import main
from matchlab.experiment.profiles import QUICK
from matchlab.experiment.registry import expected


def write(tmp: Path, doc: dict, name: str = "run-20260101-000000") -> None:
    (tmp / name).mkdir(parents=True)
    (tmp / name / "results.json").write_text(json.dumps(doc))


def criterion(crit, observed, status: str = "FAIL") -> dict:
    return {"criterion": {"id": crit.id, "asr": crit.asr, "experiment": crit.experiment, "name": crit.name},
            "observed": observed, "status": status,
            "detail": "no data: the query returned nothing" if observed is None else ""}


def doc(asr: str, observed=0.1, status="FAIL (quick)", drop: int = 0, crit_status: str = "FAIL") -> dict:
    crits = expected(QUICK, asr)[drop:]
    return {"profile": "quick", "asr": [{"asr": asr, "status": status, "reason": "r"}],
            "criteria": [criterion(c, observed, crit_status) for c in crits]}


def test_complete_results_pass_even_with_fail_or_inconclusive_verdicts(tmp_path, capsys):
    write(tmp_path, doc("ASR 1"))
    assert main([str(tmp_path), "--asr", "ASR 1"]) == 0
    assert "ASR 1: FAIL (quick)" in capsys.readouterr().out
    other = tmp_path / "i"
    write(other, doc("ASR 1", observed=None, status="INCONCLUSIVE (quick)", crit_status="INCONCLUSIVE"))
    assert main([str(other), "--asr", "ASR 1"]) == 0


def test_missing_value_or_criterion_fails(tmp_path, capsys):
    write(tmp_path, doc("ASR 1", observed=None))
    assert main([str(tmp_path), "--asr", "ASR 1"]) == 1
    other = tmp_path / "b"
    write(other, doc("ASR 1", drop=1))
    assert main([str(other), "--asr", "ASR 1"]) == 1
    assert f"{expected(QUICK, 'ASR 1')[0].id} " in capsys.readouterr().err  # names the missing criterion by id
    assert main([str(other), "--asr", "ASR 2"]) == 1  # no ASR 2 status at all


def test_a_quick_run_never_states_a_bare_pass(tmp_path, capsys):
    write(tmp_path, doc("ASR 2", status="PASS"))
    assert main([str(tmp_path), "--asr", "ASR 2"]) == 1
    assert "without its profile" in capsys.readouterr().err


def test_newest_run_is_checked_and_absence_fails(tmp_path):
    assert main([str(tmp_path)]) == 1
    write(tmp_path, doc("ASR 1", drop=2), "run-20260101-000000")
    write(tmp_path, doc("ASR 1"), "run-20260102-000000")
    assert main([str(tmp_path), "--asr", "ASR 1"]) == 0
