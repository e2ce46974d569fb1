"""How often A4 and B5 decide wrongly: many shams and injected effects on the real stack, counted.

Run by hand:  python benchmarks/bench_calibration.py [--shams N] [--power N] [--profile quick|full]
              [--reports-dir DIR]

Runs the calibration experiments (pytest marker ``calibration``) with ``--repeat``
in one session each: ``A4-sham`` (A4's cycles with the broker never paused),
``B5-sham`` (B5's cycles with shard b "loaded" at zero) and ``A4-power`` (a match
delay several times A4's bar injected in the outage arms only). Every
repetition is judged on its own; this reads each repetition's status from
the run's ``results.json`` and prints:

- for the shams, the share that read FAIL (a wrong decision: nothing changed),
  against the 5 % the design allows, and how many decided PASS;
- for the power check, the share that did not read FAIL (a miss).

Every figure is what the repetitions of this run said; nothing is modelled.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ALLOWED_WRONG = 0.05
CHECKS = (  # (experiment, criterion, what a right decision is, its test in experiments/test_calibration.py)
    ("A4-sham", "A4-sham.decoupling", "not FAIL", "sham_outage"),
    ("B5-sham", "B5-sham.isolation", "not FAIL", "sham_load"),
    ("A4-power", "A4-power.decoupling", "FAIL", "delay_injected"),
)


def statuses(results: Path, criterion: str) -> list[str]:
    """Each repetition's status of one criterion (one entry when the run had a single repetition)."""
    doc = json.loads(results.read_text())
    for v in doc["criteria"]:
        if v["criterion"]["id"] == criterion:
            reps = (v.get("evidence") or {}).get("repetitions")
            return [r["status"] for r in reps] if reps else [v["status"]]
    raise SystemExit(f"{results}: no verdict for {criterion} (did the run fail? see its log)")


def run(experiment: str, test: str, repeat: int, profile: str, reports: Path) -> Path:
    folder = reports / experiment
    cmd = [sys.executable, "-m", "pytest", "-m", "calibration", "-k", test,
           "--profile", profile, "--repeat", str(repeat), "--reports-dir", str(folder), "-p", "no:cacheprovider",
           "-q"]
    print("$", " ".join(cmd), flush=True)
    t0 = time.monotonic()
    done = subprocess.run(cmd, check=False)
    print(f"  {experiment}: {repeat} repetitions in {time.monotonic() - t0:.0f} s (pytest exit {done.returncode})",
          flush=True)
    runs = sorted(folder.glob("run-*/results.json"))
    if not runs:
        raise SystemExit(f"{experiment}: the run wrote no results.json under {folder}")
    return runs[-1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shams", type=int, default=20, help="repetitions of each sham (default 20)")
    ap.add_argument("--power", type=int, default=5, help="repetitions of the injected effect (default 5)")
    ap.add_argument("--profile", choices=("quick", "full"), default="quick")
    ap.add_argument("--reports-dir", type=Path, default=Path("reports/calibration"))
    args = ap.parse_args()
    rows = []
    for experiment, criterion, right, test in CHECKS:
        n = args.power if experiment.endswith("power") else args.shams
        if n < 1:
            continue
        got = statuses(run(experiment, test, n, args.profile, args.reports_dir), criterion)
        wrong = sum((s == "FAIL") if right == "not FAIL" else (s != "FAIL") for s in got)
        rows.append((experiment, right, got, wrong))
    print(f"\n{'check':10} {'right is':9} {'runs':>4} {'PASS':>4} {'INCONCL.':>8} {'FAIL':>4}  wrong decisions")
    for experiment, right, got, wrong in rows:
        rate = wrong / len(got)
        flag = "" if right == "FAIL" or rate <= ALLOWED_WRONG else f"  (above the {ALLOWED_WRONG:.0%} allowed)"
        print(f"{experiment:10} {right:9} {len(got):4} {got.count('PASS'):4} {got.count('INCONCLUSIVE'):8} "
              f"{got.count('FAIL'):4}  {wrong}/{len(got)} = {rate:.0%}{flag}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
