"""Experiment phases as Grafana range annotations, so the live dashboard shows what the report shows.

Each phase, its warm-up and any outage is posted through Grafana's HTTP API
(``POST /api/annotations``) on the experiment dashboard, tagged with the run
id, the experiment and the phase, so a user can filter a run's annotations or
an experiment's in the dashboard's annotation settings.
"""

from __future__ import annotations

import httpx

from matchlab.experiment.record import ExperimentRecord

DASHBOARD_UID = "me-experiment"
TIMEOUT_S = 5.0


def phase_annotations(run_id: str, exp: ExperimentRecord) -> list[dict]:
    """The annotation bodies for one experiment: a range per phase, per warm-up and per outage."""
    out = []

    def add(what: str, start: float, end: float, phase: str) -> None:
        out.append({"dashboardUID": DASHBOARD_UID, "time": int(start * 1000), "timeEnd": int(end * 1000),
                    "tags": ["matchlab", f"run:{run_id}", f"experiment:{exp.id}", f"phase:{phase}", what],
                    "text": f"{exp.id} {phase}: {what} (run {run_id})"})

    for p in exp.phases:
        add("phase", p.start, p.end, p.name)
        measured = p.marks.get("measured", p.start)
        if measured > p.start:
            add("warm-up", p.start, measured, p.name)
        add("measured window", measured, p.end, p.name)
        if "outage" in p.marks:
            add("broker outage", p.marks["outage"], p.marks.get("resumed", p.end), p.name)
    return out


def post_annotations(grafana_url: str, auth: tuple[str, str], run_id: str, exp: ExperimentRecord) -> int:
    """Post every annotation of ``exp``; returns how many Grafana accepted. Raises on the first refusal."""
    with httpx.Client(base_url=grafana_url.rstrip("/"), auth=auth, timeout=TIMEOUT_S) as client:
        bodies = phase_annotations(run_id, exp)
        for body in bodies:
            resp = client.post("/api/annotations", json=body)
            if resp.status_code != 200:
                raise RuntimeError(f"Grafana refused an annotation: HTTP {resp.status_code} {resp.text[:200]}")
    return len(bodies)
