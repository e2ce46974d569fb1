"""Recording rules (promtool check + unit tests) and the dashboard generated from the panel definitions."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from matchlab.observe.dashboard import DASHBOARD_PATH, UID, build_dashboard, render
from matchlab.observe.panels import PANELS

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "prometheus" / "recording-rules.yaml"
RULE_TESTS = ROOT / "prometheus" / "recording-rules.test.yaml"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("prerequisite missing: promtool (Debian package `prometheus`; run scripts/setup.sh)")
    return path


def test_rules_pass_promtool_check():
    out = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_rules_unit_tests_pass():
    out = subprocess.run([promtool(), "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_rules_follow_the_naming_scheme_in_one_5s_group():
    doc = yaml.safe_load(RULES.read_text())
    assert len(doc["groups"]) == 1 and doc["groups"][0]["interval"] == "5s"
    records = [r["record"] for r in doc["groups"][0]["rules"]]
    assert all(re.match(r"^me:[a-z0-9_]+:[0-9]+[sm]$", r) for r in records), records
    for needed in ("me:match_duration_p50:30s", "me:match_duration_p95:30s", "me:match_duration_p99:30s",
                   "me:matches_per_minute:30s", "me:matches_per_minute_total:30s", "me:orders_per_second:30s"):
        assert needed in records
    for component in ("validation", "orderbook_insertion", "matching_algorithm", "wal_append", "event_publish"):
        assert f"me:{component}_duration_avg:30s" in records and f"me:{component}_duration_p99:30s" in records


def test_committed_dashboard_is_the_generated_one():
    assert DASHBOARD_PATH.read_text() == render(), "run: python -m matchlab.observe.dashboard"


def test_dashboard_structure():
    d = json.loads(DASHBOARD_PATH.read_text())
    assert (d["uid"], d["title"], d["refresh"]) == (UID, "Matching Engine Experiment", "5s")
    assert d["time"] == {"from": "now-15m", "to": "now"}
    assert [v["name"] for v in d["templating"]["list"]] == ["datasource"]
    panels = d["panels"]
    assert len(panels) == 6
    assert [(p["gridPos"]["x"], p["gridPos"]["y"], p["gridPos"]["w"]) for p in panels] == [
        (0, 0, 12), (12, 0, 12), (0, 8, 12), (12, 8, 12), (0, 16, 12), (12, 16, 12)
    ]
    for p in panels:
        assert p["datasource"]["uid"] == "${datasource}"
        assert all(t["datasource"]["uid"] == "${datasource}" for t in p["targets"])
    steps = {s["value"]: s["color"] for s in panels[0]["fieldConfig"]["defaults"]["thresholds"]["steps"]}
    assert steps[0.2] == "red" and steps[0.05] == "yellow"
    assert {s["value"] for s in panels[1]["fieldConfig"]["defaults"]["thresholds"]["steps"]} >= {1000, 5000}
    assert 0.2 in {s["value"] for s in panels[5]["fieldConfig"]["defaults"]["thresholds"]["steps"]}


def test_panels_use_recording_rules_where_one_exists():
    records = {r["record"] for r in yaml.safe_load(RULES.read_text())["groups"][0]["rules"]}
    used = {m for p in PANELS for t in p.targets for m in re.findall(r"me:[a-z0-9_]+:[0-9]+[sm]", t.expr)}
    assert used <= records, used - records
    raw_histograms = [t.expr for p in PANELS for t in p.targets if "histogram_quantile" in t.expr]
    assert raw_histograms == []  # every quantile comes from a rule
    assert build_dashboard()["panels"][0]["targets"][2]["expr"] == "me:match_duration_p99:30s"
