"""``python -m matchlab.history``: the runs under the reports directory, and one figure over them.

Lists every run of ``reports/history.jsonl`` (time, run, commit, profile,
backend, ASR statuses, and the chosen figure); with ``--plot FILE.png``
draws the figure over the complete runs of one profile and backend, change
points marked (see ``changepoints`` for the method and its false-alarm rate).
Exit codes: 0, or 2 for bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from matchlab.errors import ConfigError
from matchlab.history.changepoints import ALPHA, change_points
from matchlab.history.index import read_index

DEFAULT_FIGURE = "A2.p99"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m matchlab.history", description=__doc__.split("\n\n")[0])
    p.add_argument("--reports-dir", type=Path, default=Path("reports"), help="where the runs are (default reports)")
    p.add_argument("--figure", default=DEFAULT_FIGURE,
                   help=f"headline figure: a criterion id or '<phase> client p99 ms' (default {DEFAULT_FIGURE})")
    p.add_argument("--plot", type=Path, default=None, metavar="FILE.png", help="draw the figure over the runs")
    return p


def comparable(entries: list[dict], figure: str) -> list[dict]:
    """Complete runs holding the figure, of the profile and backend of the latest of them."""
    runs = [e for e in entries if e.get("complete") == "yes" and figure in e.get("headline", {})]
    if not runs:
        return []
    latest = runs[-1]
    return [e for e in runs if (e.get("profile"), e.get("backend")) == (latest.get("profile"), latest.get("backend"))]


def listing(entries: list[dict], figure: str, flagged: set[str]) -> list[str]:
    lines = [f"{'time':19}  {'run':22}  {'commit':38}  {'profile':7}  {'backend':7}  {figure:>12}  statuses"]
    for e in entries:
        value = e.get("headline", {}).get(figure)
        text = "" if value is None else f"{value:.6g}"
        mark = " <- change point" if e["run"] in flagged else ""
        statuses = "; ".join(f"{k} {v}" for k, v in e.get("statuses", {}).items()) or "-"
        complete = "" if e.get("complete") == "yes" else f" [incomplete: {e.get('complete')}]"
        lines.append(f"{e.get('time', ''):19}  {e['run']:22}  {e.get('commit', ''):38}  {e.get('profile') or '':7}  "
                     f"{e.get('backend') or '':7}  {text:>12}  {statuses}{complete}{mark}")
    return lines


def plot(path: Path | io.StringIO, runs: list[dict], figure: str, points: list[int]) -> None:
    """PNG to a path, or SVG into a text buffer (the report embeds it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = [e["headline"][figure] for e in runs]
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(range(len(values)), values, marker="o", color="tab:blue")
    for i in points:
        ax.axvline(i - 0.5, color="tab:red", linestyle="--")
    ax.set_xticks(range(len(values)), [e["commit"].split()[0] for e in runs], rotation=45, ha="right", fontsize=7)
    ax.set_ylabel(figure)
    ax.set_ylim(bottom=0)
    profile, backend = runs[0].get("profile"), runs[0].get("backend")
    ax.set_title(f"{figure} over {len(values)} complete runs ({profile}, {backend}); dashed: change points "
                 f"(permutation test, false alarms <= {ALPHA:.0%})", fontsize=9)
    fig.tight_layout()
    if isinstance(path, Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    else:
        fig.savefig(path, format="svg")
    plt.close(fig)


def history_svg(reports_dir: Path, figure: str) -> tuple[str, str]:
    """(a one-line account, the SVG or "") of ``figure`` over the complete comparable runs, for the report."""
    try:
        runs = comparable(read_index(reports_dir), figure)
    except ConfigError as exc:
        return f"no history: {exc}", ""
    if not runs:
        return f"no complete run of this profile and backend holds {figure} yet", ""
    points = change_points([e["headline"][figure] for e in runs])
    account = (f"{figure} over {len(runs)} complete runs ({runs[-1].get('profile')}, {runs[-1].get('backend')}); "
               "change points: " + (", ".join(f"before {runs[i]['run']}" for i in points) or "none"))
    buffer = io.StringIO()
    plot(buffer, runs, figure, points)
    svg = buffer.getvalue()
    return account, svg[svg.index("<svg"):]  # inline: without the XML prologue


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        entries = read_index(args.reports_dir)
    except ConfigError as exc:
        print(f"history: {exc}", file=sys.stderr)
        return 2
    runs = comparable(entries, args.figure)
    points = change_points([e["headline"][args.figure] for e in runs])
    print("\n".join(listing(entries, args.figure, {runs[i]["run"] for i in points})))
    print(f"{len(runs)} complete runs hold {args.figure}; change points: "
          + (", ".join(f"before {runs[i]['run']}" for i in points) or "none")
          + f" (binary segmentation, permutation test at {ALPHA:.0%}: a history without a change is flagged in "
            f"at most {ALPHA:.0%} of cases)")
    if args.plot:
        if not runs:
            print(f"history: no complete run holds {args.figure}; nothing to plot", file=sys.stderr)
            return 2
        plot(args.plot, runs, args.figure, points)
        print(f"plot written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
