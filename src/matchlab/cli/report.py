"""``report RUN_DIR``: the verdicts of an earlier run, re-rendered from its ``results.json``.

The ASR statuses are decided again by today's rules from the stored
criteria (each with its observed value, threshold and query); the observed
values themselves are not re-measured: that would need the run's
Prometheus data, and the charts of the HTML report need the same.
"""

from __future__ import annotations

import argparse
import json
from html import escape
from pathlib import Path

from matchlab.errors import ConfigError
from matchlab.experiment.record import RunRecord
from matchlab.observe.summary import summary_html, summary_lines
from matchlab.observe.verdicts import Criterion, Role, Verdict

RESULTS_FILE = "results.json"


def verdict_from_dict(doc: dict) -> Verdict:
    c = doc["criterion"]
    criterion = Criterion(**{**c, "role": Role(c["role"])})
    window = tuple(doc["window"]) if doc.get("window") else None
    return Verdict(criterion, doc["observed"], doc["passed"], doc["query"], doc.get("detail", ""), window)


def load_record(run_dir: Path) -> RunRecord:
    path = run_dir / RESULTS_FILE
    try:
        doc = json.loads(path.read_text())
        record = RunRecord(backend=doc["backend"], profile=doc["profile"], scaling_note=doc.get("scaling", ""),
                           facts=doc.get("facts", {}))
        record.add_verdicts([verdict_from_dict(v) for v in doc.get("criteria", [])])
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror} (RUN_DIR is a reports/run-* folder)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a matchlab results file: {type(exc).__name__} {exc}") from None
    return record


def render(args: argparse.Namespace) -> int:
    record = load_record(args.run_dir)
    stored = {a["asr"]: a["status"] for a in json.loads((args.run_dir / RESULTS_FILE).read_text()).get("asr", [])}
    print(f"{args.run_dir}: backend {record.backend}, profile {record.profile}")
    for line in summary_lines(record):
        print(line)
    for outcome in record.outcomes():
        if stored.get(outcome.asr, outcome.status.value) != outcome.status.value:
            print(f"note: {outcome.asr} was {stored[outcome.asr]} when the run ended; today's rules say {outcome.status.value}")
    if args.html:
        title = f"matchlab report: {escape(args.run_dir.name)}"
        page = f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title></head><body>"
        args.html.write_text(f"{page}{summary_html(record)}</body></html>\n")
        print(f"HTML written to {args.html}")
    return 0
