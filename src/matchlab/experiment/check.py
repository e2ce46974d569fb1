"""``python -m matchlab.experiment.check REPORTS_DIR``: is the newest run's evidence complete?

Exits 0 when the newest ``results.json`` under REPORTS_DIR carries an ASR
status for each ASR asked for and a value for every one of its criteria
(none missing, none without data), whatever the verdicts are: a FAIL
verdict is a measured result, a missing value is a broken harness. Prints
the statuses either way.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXPECTED_CRITERIA = {"ASR 1": 8, "ASR 2": 12}


def newest_results(reports: Path) -> Path | None:
    found = sorted(reports.glob("run-*/results.json"))
    return found[-1] if found else None


def problems(doc: dict, asrs: list[str]) -> list[str]:
    out = []
    statuses = {a["asr"]: a for a in doc.get("asr", [])}
    for asr in asrs:
        if asr not in statuses:
            out.append(f"{asr}: no status in the results")
            continue
        criteria = [c for c in doc.get("criteria", []) if c["criterion"]["asr"] == asr]
        if len(criteria) != EXPECTED_CRITERIA[asr]:
            out.append(f"{asr}: {len(criteria)} criteria evaluated, {EXPECTED_CRITERIA[asr]} expected")
        for c in criteria:
            if c["observed"] is None:
                out.append(f"{asr}: {c['criterion']['experiment']} {c['criterion']['name']}: no value ({c['detail']})")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", type=Path)
    parser.add_argument("--asr", action="append", choices=sorted(EXPECTED_CRITERIA), default=[])
    args = parser.parse_args(argv)
    path = newest_results(args.reports)
    if path is None:
        print(f"check: no run-*/results.json under {args.reports}", file=sys.stderr)
        return 1
    doc = json.loads(path.read_text())
    for a in doc.get("asr", []):
        print(f"{a['asr']}: {a['status']} ({a['reason']})")
    found = problems(doc, args.asr or sorted(EXPECTED_CRITERIA))
    for p in found:
        print(f"check: {p}", file=sys.stderr)
    print(f"check: {path}: {'complete' if not found else f'{len(found)} problem(s)'}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
