"""``report RUN_DIR``: the verdicts of an earlier run, re-rendered from its ``results.json``.

The ASR statuses are decided again by today's rules from the stored
criteria (each with its observed value, threshold and query); the observed
values themselves are not re-measured: that would need the run's
Prometheus data, and the charts of the HTML report need the same. Results
whose criteria this version cannot rebuild (written by another version of
the verdict model) are shown as stored, with a note saying so.
"""

from __future__ import annotations

import argparse
import json
from html import escape
from pathlib import Path

from matchlab.errors import ConfigError
from matchlab.experiment.record import RunRecord
from matchlab.observe.verdicts import verdict_from_dict
from matchlab.reporting.summary import summary_html, summary_lines

RESULTS_FILE = "results.json"


def read_results(run_dir: Path) -> dict:
    path = run_dir / RESULTS_FILE
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror} (RUN_DIR is a reports/run-* folder)") from None
    except ValueError as exc:
        raise ConfigError(f"{path} is not JSON: {exc}") from None


def record_from_results(doc: dict) -> RunRecord:
    """Raises KeyError, TypeError or ValueError when the criteria are not in this version's format."""
    record = RunRecord(backend=doc["backend"], profile=doc["profile"], scaling_note=doc.get("scaling", ""),
                       facts=doc.get("facts", {}))
    record.add_verdicts([verdict_from_dict(v) for v in doc.get("criteria", [])])
    return record


def stored_lines(doc: dict) -> list[str]:
    """The statuses and criteria as the run wrote them, decided by nothing here."""
    lines = [a.get("line") or f"{a['asr']}: {a['status']} ({a.get('reason', '')})" for a in doc.get("asr", [])]
    for c in doc.get("criteria", []):
        crit = c["criterion"]
        verdict = c.get("status") or c.get("verdict") or ("PASS" if c.get("passed") else "FAIL")
        observed = c.get("observed_text") or ("no data" if c.get("observed") is None else f"{c['observed']:.6g}")
        lines.append(f"[{verdict}] {crit['experiment']} {crit['name']} | observed {observed} | query: {c['query']}")
    return lines


def render(args: argparse.Namespace) -> int:
    doc = read_results(args.run_dir)
    print(f"{args.run_dir}: backend {doc.get('backend')}, profile {doc.get('profile')}")
    try:
        record = record_from_results(doc)
    except (KeyError, TypeError, ValueError) as exc:
        lines = stored_lines(doc)
        print("\n".join(lines))
        print(f"note: shown as stored; this version cannot re-decide these criteria ({type(exc).__name__}: {exc})")
        html = f"<pre>{escape(chr(10).join(lines))}</pre>"
    else:
        print("\n".join(summary_lines(record)))
        stored = {a["asr"]: a["status"] for a in doc.get("asr", [])}
        for outcome in record.outcomes():
            if stored.get(outcome.asr, outcome.label) != outcome.label:
                print(f"note: {outcome.asr} was {stored[outcome.asr]} when the run ended; "
                      f"today's rules say {outcome.label}")
        if (args.run_dir / "report.html").exists():
            print(f"the run's own report, with its charts: {args.run_dir / 'report.html'}")
        html = summary_html(record)
    if args.html:
        title = f"matchlab report: {escape(args.run_dir.name)}"
        args.html.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title></head>"
                             f"<body>{html}</body></html>\n")
        print(f"HTML written to {args.html}")
    return 0
