"""The run index, ``python -m matchlab.history`` and its change points (with their false-alarm rate)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from matchlab.history.__main__ import main
from matchlab.history.changepoints import change_points
from matchlab.history.index import HISTORY_FILE, append_entry, history_entry, prune_runs, read_index
from tests.synthetic_runs import synthetic_run


def test_an_index_line_carries_identity_statuses_and_headline_figures(tmp_path):
    record = synthetic_run(seed=5, seconds=20)
    append_entry(tmp_path, history_entry("run-1", record.to_dict()))
    [entry] = read_index(tmp_path)
    assert entry["run"] == "run-1" and entry["commit"] == record.facts["commit"]
    assert entry["profile"] == "quick" and entry["backend"] == "local" and entry["complete"] == "yes"
    assert entry["headline"]["A2.p99"] == next(v.observed for v in record.verdicts if v.criterion.id == "A2.p99")
    assert entry["headline"]["A2 client p99 ms"] == record.experiments["A2"].phases[0].load.latency_ms["p99"]
    assert entry["statuses"] == {o.asr: o.label for o in record.outcomes()}


def test_a_step_is_found_where_it_happened():
    rng = np.random.default_rng(3)
    values = list(rng.normal(10, 0.5, 12)) + list(rng.normal(12, 0.5, 10))
    assert change_points(values) == [12]


def test_the_false_alarm_rate_on_histories_without_change_is_about_five_percent():
    rng = np.random.default_rng(4)
    flagged = sum(bool(change_points(list(rng.normal(10, 1, 15)))) for _ in range(200))
    assert flagged <= 20  # 10 expected at 5 %; the method would be mis-calibrated well above
    assert change_points([1.0, 5.0, 1.0]) == []  # too short to test


def write_history(folder, values, commit_of=lambda i: f"c{i:02d}"):
    for i, v in enumerate(values):
        doc = {"profile": "quick", "backend": "local", "asr": [{"asr": "ASR 1", "status": "PASS (quick)"}],
               "facts": {"finished": f"2026-11-27 10:{i:02d}:00", "commit": commit_of(i), "complete": "yes"},
               "criteria": [{"criterion": {"id": "A2.p99"}, "observed": v}]}
        append_entry(folder, history_entry(f"run-{i:02d}", doc))


def test_history_lists_runs_flags_the_change_and_plots_it(tmp_path, capsys):
    write_history(tmp_path, [0.010] * 4 + [0.0101, 0.0099, 0.0100, 0.0102] + [0.014, 0.0141, 0.0139, 0.0140, 0.0142])
    png = tmp_path / "p99.png"
    assert main(["--reports-dir", str(tmp_path), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "run-08" in out.split("<- change point")[0].splitlines()[-1]
    assert "change points: before run-08" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_missing_index_or_figure_is_one_line(tmp_path, capsys):
    assert main(["--reports-dir", str(tmp_path)]) == 2
    assert "no run index" in capsys.readouterr().err
    write_history(tmp_path, [0.01, 0.02])
    assert main(["--reports-dir", str(tmp_path), "--figure", "B2.sustained", "--plot", str(tmp_path / "x.png")]) == 2
    assert "no complete run holds B2.sustained" in capsys.readouterr().err
    (tmp_path / HISTORY_FILE).write_text(json.dumps({"run": "x"}) + "\n{broken\n")
    assert main(["--reports-dir", str(tmp_path)]) == 2
    assert "line 2 is not JSON" in capsys.readouterr().err


def test_keep_runs_deletes_the_oldest_run_folders_only(tmp_path):
    names = [f"run-20261127-1{i}0000" for i in range(5)]
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text("{}")
    (tmp_path / "up-20261127-090000").mkdir()  # a stack `matchlab up` left: not a run
    append_entry(tmp_path, {"run": names[0]})
    current = tmp_path / names[2]  # this session's folder is kept even when it is not the newest
    pruned = prune_runs(tmp_path, 2, current)
    assert [p.name for p in pruned] == names[:2] + [names[3]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([names[2], names[4], "up-20261127-090000", HISTORY_FILE])
    assert read_index(tmp_path) == [{"run": names[0]}]
    with pytest.raises(ValueError, match="at least 1"):
        prune_runs(tmp_path, 0, current)


def test_the_report_carries_the_history_plot_when_asked(tmp_path):
    from matchlab.history.__main__ import history_svg
    from matchlab.reporting.report import render_report

    write_history(tmp_path, [0.010] * 4 + [0.0101, 0.0099, 0.0100, 0.0102] + [0.014, 0.0141, 0.0139, 0.0140, 0.0142])
    account, svg = history_svg(tmp_path, "A2.p99")
    assert account.startswith("A2.p99 over 13 complete runs (quick, local)") and "before run-08" in account
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    record = synthetic_run(seed=5, seconds=20)
    html = render_report(record, {}, complete=True, grafana=None, history=(account, svg))
    assert '<h2 id="history">History</h2>' in html and html.count("<svg") >= 1 and "before run-08" in html
    assert "History" not in render_report(record, {}, complete=True, grafana=None)
    missing, nothing = history_svg(tmp_path, "B9.p99")
    assert "no complete run" in missing and nothing == ""
    assert history_svg(tmp_path / "empty", "A2.p99")[0].startswith("no history: ")
