"""``python -m matchlab.compare A B [--fail-on-worse 10%]``: is B better, worse or the same as A?

Exit codes: 0 compared (and no regression beyond the threshold), 1 a
significant regression beyond ``--fail-on-worse``, 2 bad input (an
unreadable or incomplete results file: one line on stderr).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from matchlab.compare.runs import Row, compare_runs, legend, load_results, table_lines
from matchlab.errors import ConfigError

IDENTITY_FACTS = ("commit", "machine", "matchlab", "python", "finished", "repeat", "inject match delay")


def percentage(text: str) -> float:
    try:
        value = float(text.rstrip("%")) / 100
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a percentage such as 10% , got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a threshold is not negative: {text!r}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m matchlab.compare", description=__doc__.split("\n\n")[0])
    p.add_argument("a", type=Path, help="the baseline: a run folder (reports/run-*) or its results.json")
    p.add_argument("b", type=Path, help="the run to judge against it")
    p.add_argument("--fail-on-worse", type=percentage, default=None, metavar="PCT",
                   help="exit 1 when a figure is significantly worse and its change exceeds PCT of A's value "
                        "(for ratios such as rises: PCT percentage points)")
    return p


def identity_lines(name: str, doc: dict) -> list[str]:
    facts = doc.get("facts", {})
    known = ", ".join(f"{k} {facts[k]}" for k in IDENTITY_FACTS if k in facts)
    return [f"{name}: backend {doc.get('backend')}, profile {doc.get('profile')}; {known}"]


def comparison_lines(a: dict, b: dict, a_name: str = "A", b_name: str = "B") -> tuple[list[str], list[Row]]:
    rows = compare_runs(a, b)
    lines = identity_lines(a_name, a) + identity_lines(b_name, b)
    if a.get("profile") != b.get("profile") or a.get("backend") != b.get("backend"):
        lines.append("note: the runs differ in profile or backend; their figures may not measure the same thing")
    delays = [doc.get("facts", {}).get("inject match delay", "none") for doc in (a, b)]
    if delays[0] != delays[1]:
        lines.append(f"note: the runs differ in injected match delay (A: {delays[0]}; B: {delays[1]})")
    lines += table_lines(rows) + ["", legend()]
    return lines, rows


def comparison_with(baseline: Path, record) -> list[str]:
    """The comparison of a finished session's ``RunRecord`` with a baseline run (``pytest --compare-to``)."""
    b = record.to_dict()
    if b.get("facts", {}).get("complete") != "yes":
        return [f"not compared: this run is incomplete ({b.get('facts', {}).get('complete', 'not recorded')})"]
    try:
        a = load_results(baseline)
    except ConfigError as exc:
        return [f"not compared: {exc}"]
    return comparison_lines(a, b, f"A {baseline}", "B this run")[0]


def regressions(rows: list[Row], threshold: float) -> list[Row]:
    return [r for r in rows if (r.regression() or 0.0) > threshold]


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        a, b = load_results(args.a), load_results(args.b)
    except ConfigError as exc:
        print(f"compare: {exc}", file=sys.stderr)
        return 2
    lines, rows = comparison_lines(a, b, f"A {args.a}", f"B {args.b}")
    print("\n".join(lines))
    if args.fail_on_worse is not None:
        bad = regressions(rows, args.fail_on_worse)
        if bad:
            print(f"\nworse beyond {args.fail_on_worse:.0%}: " + "; ".join(r.what for r in bad))
            return 1
        print(f"\nno significant regression beyond {args.fail_on_worse:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
