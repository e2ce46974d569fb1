"""``python -m matchlab.experiment.check REPORTS_DIR``: is the newest run's evidence complete?

Exits 0 when the newest ``results.json`` under REPORTS_DIR carries an ASR
status for each ASR asked for and a verdict for every criterion the
registry expects of it, none of them "no data", whatever the verdicts are: a
FAIL or an INCONCLUSIVE verdict is a measured result, a missing value is a
broken harness. A quick-profile run must never state a bare PASS. Prints the
status lines either way.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from matchlab.experiment import registry
from matchlab.experiment.profiles import PROFILES

ASRS = tuple(registry.RULES)


def newest_results(reports: Path) -> Path | None:
    found = sorted(reports.glob("run-*/results.json"))
    return found[-1] if found else None


def problems(doc: dict, asrs: list[str]) -> list[str]:
    out = []
    profile = PROFILES.get(doc.get("profile", ""))
    if profile is None:
        return [f"unknown profile {doc.get('profile')!r} in the results"]
    statuses = {a["asr"]: a for a in doc.get("asr", [])}
    for asr in asrs:
        if asr not in statuses:
            out.append(f"{asr}: no status in the results")
            continue
        status = statuses[asr]["status"]
        if profile.name != "full" and not status.endswith(f"({profile.name})"):
            out.append(f"{asr}: a {profile.name}-profile run states {status!r} without its profile")
        found = {c["criterion"]["id"]: c for c in doc.get("criteria", []) if c["criterion"]["asr"] == asr}
        for crit in registry.expected(profile, asr):
            c = found.get(crit.id)
            if c is None:
                out.append(f"{asr}: {crit.id} ({crit.experiment} {crit.name}) was not evaluated")
            elif c["observed"] is None and c["status"] != "INCONCLUSIVE":
                out.append(f"{asr}: {crit.id}: no value ({c['detail']})")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", type=Path)
    parser.add_argument("--asr", action="append", choices=ASRS, default=[])
    args = parser.parse_args(argv)
    path = newest_results(args.reports)
    if path is None:
        print(f"check: no run-*/results.json under {args.reports}", file=sys.stderr)
        return 1
    doc = json.loads(path.read_text())
    for a in doc.get("asr", []):
        print(a.get("line") or f"{a['asr']}: {a['status']} ({a['reason']})")
    found = problems(doc, args.asr or list(ASRS))
    for p in found:
        print(f"check: {p}", file=sys.stderr)
    print(f"check: {path}: {'complete' if not found else f'{len(found)} problem(s)'}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
