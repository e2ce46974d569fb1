"""``reports/history.jsonl``: one JSON line per run, appended when a session finishes.

A line holds what a history needs without opening the run's folder: when it
finished, the folder, commit, profile, backend, whether it completed, the
ASR statuses, and its headline figures (every criterion's observed value by
id, and each phase's client p99 in milliseconds).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from matchlab.errors import ConfigError

HISTORY_FILE = "history.jsonl"


def history_entry(run: str, doc: dict) -> dict:
    """The index line of one run, from its results (``RunRecord.to_dict()`` or a read results.json)."""
    facts = doc.get("facts", {})
    headline = {c["criterion"]["id"]: c["observed"] for c in doc.get("criteria", [])
                if isinstance(c.get("observed"), (int, float)) and math.isfinite(c["observed"])}
    for exp_id, exp in doc.get("experiments", {}).items():
        for phase in exp.get("phases", []):
            count = phase.get("load", {}).get("latency_ms", {}).get("count")
            if count:
                name = exp_id if phase["name"] == exp_id else f"{exp_id}/{phase['name']}"
                headline[f"{name} client p99 ms"] = phase["load"]["latency_ms"]["p99"]
    return {
        "time": facts.get("finished", ""),
        "run": run,
        "commit": facts.get("commit", "unknown"),
        "profile": doc.get("profile"),
        "backend": doc.get("backend"),
        "complete": facts.get("complete", "not recorded"),
        "statuses": {a["asr"]: a["status"] for a in doc.get("asr", [])},
        "headline": headline,
    }


def append_entry(reports_dir: Path, entry: dict) -> Path:
    path = reports_dir / HISTORY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(entry, default=str) + "\n")
    return path


def read_index(reports_dir: Path) -> list[dict]:
    path = reports_dir / HISTORY_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"no run index at {path}: it is written when a pytest session with experiments "
                          "finishes (--reports-dir elsewhere)") from None
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except ValueError as exc:
            raise ConfigError(f"{path} line {number} is not JSON: {exc}") from None
    return entries


def folder_size(reports_dir: Path) -> int:
    """Bytes under the reports directory (printed at the end of each run)."""
    return sum(p.stat().st_size for p in reports_dir.rglob("*") if p.is_file())


RUN_PREFIX = "run-"


def prune_runs(reports_dir: Path, keep: int, current: Path) -> list[Path]:
    """Delete the oldest run folders beyond the newest ``keep`` (never ``current``); the index keeps their lines.

    Only ``run-*`` folders directly under the reports directory are touched
    (their names are timestamps, so name order is age order): stacks left by
    ``matchlab up`` and anything else there stay.
    """
    if keep < 1:
        raise ValueError(f"--keep-runs keeps at least 1 run, got {keep}")
    runs = sorted(p for p in reports_dir.glob(f"{RUN_PREFIX}*") if p.is_dir() and p.resolve() != current.resolve())
    doomed = runs[:max(0, len(runs) - (keep - 1))]
    for path in doomed:
        shutil.rmtree(path)
    return doomed
