"""Generates the Grafana dashboard JSON from ``panels.PANELS``.

``python -m matchlab.observe.dashboard [--check]`` writes (or checks)
``grafana/dashboards/matching-engine-experiment.json``, the one file that
both the local Grafana and the Kubernetes ConfigMap provision.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from matchlab.observe.panels import PANELS, Panel

DASHBOARD_PATH = Path(__file__).resolve().parents[3] / "grafana" / "dashboards" / "matching-engine-experiment.json"
UID = "me-experiment"
TITLE = "Matching Engine Experiment"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def _panel_json(panel: Panel) -> dict:
    steps = [{"color": "green", "value": None}]
    steps += [{"color": t.color, "value": t.value} for t in sorted(panel.thresholds, key=lambda t: t.value)]
    return {
        "id": panel.id,
        "type": "timeseries",
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": panel.grid,
        "fieldConfig": {
            "defaults": {
                "unit": panel.unit,
                "thresholds": {"mode": "absolute", "steps": steps},
                "custom": {"thresholdsStyle": {"mode": "line" if panel.thresholds else "off"}},
            },
            "overrides": [],
        },
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": t.expr, "legendFormat": t.legend}
            for i, t in enumerate(panel.targets)
        ],
    }


def build_dashboard() -> dict:
    return {
        "uid": UID,
        "title": TITLE,
        "tags": ["matching-engine", "experiment"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "5s",
        "time": {"from": "now-15m", "to": "now"},
        "editable": True,
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {"text": "Prometheus", "value": "prometheus"},
                    "hide": 0,
                }
            ]
        },
        "panels": [_panel_json(p) for p in PANELS],
    }


def render() -> str:
    return json.dumps(build_dashboard(), indent=2) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed file differs")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not DASHBOARD_PATH.exists() or DASHBOARD_PATH.read_text() != text:
            print(f"{DASHBOARD_PATH} is stale: run python -m matchlab.observe.dashboard", file=sys.stderr)
            return 1
        return 0
    DASHBOARD_PATH.parent.mkdir(parents=True, exist_ok=True)
    DASHBOARD_PATH.write_text(text)
    print(f"wrote {DASHBOARD_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
