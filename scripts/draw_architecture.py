"""Draw the package layers of ``matchlab`` with the imports between them: docs/images/architecture.png.

The layers and each package's one-line role are declared below; the arrows are
read from the code (every ``import matchlab.X`` between two packages of
different layers, leaves left out since everything uses them). An import that
runs from a lower layer to a higher one is drawn in orange. A package of
``src/matchlab`` that no layer names stops the script, naming it, so the
picture cannot silently lose one.

    .venv/bin/python scripts/draw_architecture.py [OUT.png]
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "matchlab"
OUT = ROOT / "docs" / "images" / "architecture.png"

# Top to bottom: (layer title, [(package or module, role)]). A layer may use the layers below it.
LAYERS = [
    ("entry points", [
        ("cli", "the matchlab command"),
        ("pytest_plugin", "the pytest plugin"),
        ("harness", "options, session stack"),
        ("docs_reference", "generated docs pages"),
    ]),
    ("experiments and their evidence", [
        ("experiment", "experiments, criteria"),
        ("observe", "verdicts, report"),
        ("compare", "two runs, intervals"),
        ("history", "runs over time"),
    ]),
    ("the stack and where it runs", [
        ("stack", "specs, local backend"),
        ("k8s", "k3d, existing clusters"),
    ]),
    ("the system under test and its load", [
        ("loadgen", "open-model load"),
        ("gateway", "routes orders"),
        ("shard", "books, journal, events"),
    ]),
    ("what the HTTP services share", [
        ("edge", "limits, fast lane"),
        ("httpjson", "replies, metrics site"),
        ("http1", "keep-alive client"),
        ("loopmetrics", "event-loop counters"),
        ("service", "start-up, signals"),
        ("admin_auth", "the admin token"),
    ]),
    ("leaves: facts and helpers", [
        ("topology", "shards, symbols, ports"),
        ("buckets", "histogram bounds"),
        ("envparse", "typed settings"),
        ("errors", "exceptions"),
        ("waiting", "wait_until"),
        ("promtext", "metrics text"),
        ("gcpolicy", "collector policy"),
    ]),
]
LEAF_LAYER = len(LAYERS) - 1
NO_ARROWS = {"docs_reference"}  # reads every package to describe it: its arrows would hide the others'
WIDTH, HEIGHT, GAP, ROW = 15.0, 0.9, 0.8, 1.75


def packages() -> set[str]:
    names = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    names |= {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    return names


def imports() -> set[tuple[str, str]]:
    """(importing package, imported package) for every import between two different packages."""
    known = packages()
    edges = set()
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        source = parts[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "matchlab":
                names = ([f"matchlab.{a.name}" for a in node.names] if node.module == "matchlab"
                         else [node.module])
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                bits = name.split(".")
                if bits[0] == "matchlab" and len(bits) > 1 and bits[1] in known and bits[1] != source:
                    edges.add((source, bits[1]))
    return edges


def layout() -> dict[str, tuple[float, float, float, float, int]]:
    """name -> (x, y, width, height, layer)."""
    boxes = {}
    widest = max(len(members) for _, members in LAYERS) * (WIDTH + GAP) - GAP
    for layer, (_, members) in enumerate(LAYERS):
        x = (widest - (len(members) * (WIDTH + GAP) - GAP)) / 2
        y = (len(LAYERS) - 1 - layer) * ROW
        for name, _ in members:
            boxes[name] = (x, y, WIDTH, HEIGHT, layer)
            x += WIDTH + GAP
    return boxes


def draw(out: Path) -> None:
    declared = {name for _, members in LAYERS for name, _ in members}
    unplaced = sorted(packages() - declared - {"__version__"})
    if unplaced:
        sys.exit(f"draw_architecture: {', '.join(unplaced)} in no layer; add each to LAYERS with its role")
    boxes = layout()
    roles = {name: role for _, members in LAYERS for name, role in members}
    widest = max(len(members) for _, members in LAYERS) * (WIDTH + GAP) - GAP
    fig = Figure(figsize=(13, 8.6), dpi=110)
    ax = fig.subplots()
    ax.set_xlim(-0.3, widest + 0.3)
    ax.set_ylim(-0.75, len(LAYERS) * ROW - 0.35)
    ax.axis("off")
    for layer, (title, _) in enumerate(LAYERS):
        y = (len(LAYERS) - 1 - layer) * ROW
        ax.text(0, y + HEIGHT + 0.1, title, ha="left", va="bottom", fontsize=10.5, color="#455a64",
                style="italic")
    for source, target in sorted(imports()):
        if source not in boxes or target not in boxes or source in NO_ARROWS:
            continue
        sx, sy, sw, sh, sl = boxes[source]
        tx, ty, tw, th, tl = boxes[target]
        if tl == LEAF_LAYER or sl == tl:
            continue
        upward = tl < sl
        start = (sx + sw / 2, sy if not upward else sy + sh)
        end = (tx + tw / 2, ty + th if not upward else ty)
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=9, lw=1.1 if upward else 0.7,
                                     color="#ef6c00" if upward else "#90a4ae", alpha=0.9 if upward else 0.55,
                                     connectionstyle="arc3,rad=0.05", zorder=1))
    for name, (x, y, w, h, layer) in boxes.items():
        face = "#e3f2fd" if layer < LEAF_LAYER - 1 else "#eceff1"
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.15", lw=1,
                                    edgecolor="#37474f", facecolor=face, zorder=2))
        ax.text(x + w / 2, y + h * 0.66, name, ha="center", va="center", fontsize=12, weight="bold", zorder=3,
                family="DejaVu Sans Mono")
        ax.text(x + w / 2, y + h * 0.27, roles[name], ha="center", va="center", fontsize=9.5, color="#37474f",
                zorder=3)
    ax.text(0, -0.6, "grey: imports from a higher layer to a lower one;  orange: imports that run upward;  "
            "imports of the leaves, and of docs_reference, are left out", fontsize=10, color="#546e7a")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    draw(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
