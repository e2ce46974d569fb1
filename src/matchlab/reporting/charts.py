"""Rendering an experiment's evidence as charts (matplotlib SVG, no display needed).

The six dashboard panels come from range queries over the experiment's own
window, with the same expressions and threshold lines as Grafana
(``panels.PANELS``); then the client's latency percentile curve, book depth
over time and the load achieved against the target. Every time chart shares
the experiment's time axis and shades its phases (warm-up, outage) and
brackets each phase's measured window, from the marks the run recorded.

Charts are inline SVG. Drawn elements carry ids (``series-…``, ``phase-…``,
``measured-…``) so a test can count what was drawn and check where the
phases were put, and so can a reader's browser tools. Titles describe what
is shown; conclusions belong to verdicts.
"""

from __future__ import annotations

import io
import re
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from matchlab.compare.blocks import quantiles
from matchlab.compare.logistic import Curve
from matchlab.experiment.cycle_design import GUARD_S, TAIL_S
from matchlab.experiment.record import ExperimentRecord
from matchlab.experiment.registry import SCALING_FACTOR as SCALING_BAR
from matchlab.experiment.scrape_blocks import read_blocks
from matchlab.observe.panels import PANELS, Panel
from matchlab.observe.promql import PromClient

STEP_S = 5.0
MARGIN_S = 10.0
FIGSIZE = (7.2, 3.3)
WIDE_FIGSIZE = (14.4, 3.3)
THRESHOLD_COLORS = {"red": "#d62728", "yellow": "#e6b800", "green": "#2ca02c"}
WARMUP_COLOR, OUTAGE_COLOR, MEASURED_COLOR = "#d0d0d0", "#f4b6b6", "#1f77b4"
matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: smaller, selectable
matplotlib.rcParams["svg.hashsalt"] = "matchlab"  # stable ids across renders


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.tight_layout()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and doctype: the SVG is inlined in HTML


def _legend(fmt: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{(\w+)\}\}", lambda m: labels.get(m.group(1), ""), fmt)


def _scale(unit: str) -> tuple[float, str]:
    return (1000.0, "ms") if unit == "s" else (1.0, {"short": "", "reqps": "requests/s"}.get(unit, unit))


MAX_PHASES_IN_LEGEND = 8


def _legend_entry(many: bool, own: str, shared: str, first: bool) -> str:
    """A phase's own legend entry; with many phases, one shared entry (on the first) for all of them."""
    if not many:
        return own
    return shared if first else "_nolegend_"

MIN_LABELLED_SHARE = 0.06  # of the time axis: about what a phase name at 7 pt needs


def shade_phases(ax, exp: ExperimentRecord, t0: float) -> None:
    """Phase boundaries, warm-ups and outages shaded, each phase's measured window bracketed.

    A phase is named on the chart only when it spans enough of the axis for its name to fit: a
    capacity search's dozens of short steps would otherwise print their names over each other
    (the report's phase table lists them all).
    """
    span = max((p.end for p in exp.phases), default=t0) - min((p.start for p in exp.phases), default=t0)
    for phase in exp.phases:
        start, end = phase.start - t0, phase.end - t0
        measured = phase.marks.get("measured", phase.start) - t0
        ax.axvline(start, color="#555555", lw=0.8, ls=":", gid=f"phase-{phase.name}-{phase.start:.3f}-{phase.end:.3f}")
        if measured > start:
            ax.axvspan(start, measured, color=WARMUP_COLOR, alpha=0.45, lw=0, gid=f"warmup-{phase.name}")
        ax.axvspan(measured, end, ymin=0.97, ymax=1.0, color=MEASURED_COLOR, alpha=0.8, lw=0,
                   gid=f"measured-{phase.name}-{phase.marks.get('measured', phase.start):.3f}-{phase.end:.3f}")
        if "outage" in phase.marks:
            ax.axvspan(phase.marks["outage"] - t0, phase.marks.get("resumed", phase.end) - t0, color=OUTAGE_COLOR,
                       alpha=0.5, lw=0, gid=f"outage-{phase.name}-{phase.marks['outage']:.3f}")
        if span and (end - start) / span >= MIN_LABELLED_SHARE:
            ax.text(start, 0.99, f" {phase.name}", transform=ax.get_xaxis_transform(), fontsize=7, va="top",
                    color="#333")


def _frame(ax, title: str, unit: str, drawn: int, wide_legend: bool = False) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("seconds since experiment start")
    if unit:
        ax.set_ylabel(unit)
    if drawn == 0:
        ax.text(0.5, 0.5, "no data for this window", transform=ax.transAxes, ha="center", color="#d62728")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", ncol=3 if wide_legend else 2)


def panel_chart(prom: PromClient, panel: Panel, exp: ExperimentRecord) -> tuple[str, int]:
    """One dashboard panel over the experiment's window; returns (svg, number of series with data)."""
    start, end, t0 = exp.start - MARGIN_S, exp.end + MARGIN_S, exp.start
    factor, unit = _scale(panel.unit)
    fig, ax = plt.subplots(figsize=FIGSIZE)
    drawn = 0
    for target in panel.targets:
        for series in prom.query_range(target.expr, start, end, STEP_S):
            pts = [(t - t0, v * factor) for t, v in series.points if v == v]  # noqa: PLR0124 - drop NaN
            if pts:
                drawn += 1
                ax.plot([p[0] for p in pts], [p[1] for p in pts], label=_legend(target.legend, series.labels), lw=1.4,
                        gid=f"series-{drawn}")
    for th in panel.thresholds:
        ax.axhline(th.value * factor, color=THRESHOLD_COLORS.get(th.color, "grey"), ls="--", lw=1, label=th.label)
    if panel.unit == "s" and drawn:
        ax.set_yscale("log")  # milliseconds of data and a 200 ms bar on one chart
    shade_phases(ax, exp, t0)
    _frame(ax, panel.title, unit, drawn)
    return _svg(fig), drawn


def percentile_chart(exp: ExperimentRecord) -> tuple[str, int]:
    fig, ax = plt.subplots(figsize=FIGSIZE)
    drawn = 0
    # Dozens of capacity-search steps: one legend entry, the steps shaded from first (dark) to last (light).
    many = len(exp.phases) > MAX_PHASES_IN_LEGEND
    shade = plt.get_cmap("viridis")
    for i, phase in enumerate(exp.phases):
        lat = phase.load.latency_ms
        if not lat.get("count"):
            continue
        keys = sorted((float(k[1:]), k) for k in lat if k.startswith("p"))
        xs = [1 / (1 - q / 100) for q, _ in keys]
        drawn += 1
        label = _legend_entry(many, f"{phase.name} (n={lat['count']})", "each step, dark (first) to light (last)",
                              drawn == 1)
        ax.plot(xs, [lat[k] for _, k in keys], marker="o", label=label, gid=f"series-{drawn}",
                color=shade(i / max(len(exp.phases) - 1, 1)) if many else None, ms=3 if many else 6)
    ax.set_xscale("log")
    ax.set_xticks([2, 10, 100, 1000, 10000], ["p50", "p90", "p99", "p99.9", "p99.99"])
    ax.axhline(200, color=THRESHOLD_COLORS["red"], ls="--", lw=1, label="200 ms")
    ax.set_yscale("log")
    ax.set_title("Client-side latency by percentile, per phase (HdrHistogram, from scheduled send)", fontsize=10)
    ax.set_ylabel("ms")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return _svg(fig), drawn


def depth_chart(prom: PromClient, exp: ExperimentRecord) -> tuple[str, int]:
    """Resting orders per shard and side; returns (svg, number of series drawn)."""
    start, end, t0 = exp.start - MARGIN_S, exp.end + MARGIN_S, exp.start
    fig, ax = plt.subplots(figsize=WIDE_FIGSIZE)
    drawn = 0
    for series in prom.query_range("sum by (shard, side) (me_orderbook_depth)", start, end, STEP_S):
        pts = series.points
        if not pts:
            continue
        drawn += 1
        ax.plot([t - t0 for t, _ in pts], [v for _, v in pts], gid=f"series-{drawn}",
                label=f"shard {series.labels.get('shard')} {series.labels.get('side')}")
    shade_phases(ax, exp, t0)
    _frame(ax, "Book depth over time (resting orders per shard and side)", "orders", drawn, wide_legend=True)
    return _svg(fig), drawn


def load_chart(exp: ExperimentRecord) -> tuple[str, int]:
    fig, ax = plt.subplots(figsize=WIDE_FIGSIZE)
    t0, drawn = exp.start, 0
    # A capacity search's dozens of steps get one legend entry, not one each (the legend would cover the plot).
    many = len(exp.phases) > MAX_PHASES_IN_LEGEND
    errors_labelled = False
    for phase in exp.phases:
        offset = phase.start - t0
        secs = [offset + s.second for s in phase.load.timeline]
        if not secs:
            continue
        ax.plot(secs, [s.scheduled for s in phase.load.timeline], color="grey", ls="--", lw=1)
        drawn += 1
        label = _legend_entry(many, f"{phase.name} answered 200", "answered 200 (each step)", drawn == 1)
        ax.plot(secs, [s.ok for s in phase.load.timeline], lw=1.2, label=label, gid=f"series-{drawn}",
                color="#1f77b4" if many else None)
        errs = [sum(s.errors.values()) + s.dropped for s in phase.load.timeline]
        if any(errs):
            ax.plot(secs, errs, color=THRESHOLD_COLORS["red"], lw=1,
                    label=_legend_entry(many, f"{phase.name} errors + dropped", "errors + dropped", not errors_labelled))
            errors_labelled = True
    ax.plot([], [], color="grey", ls="--", label="target (scheduled)")
    ax.set_ylim(bottom=0)  # a steady rate is a flat line, not a zoomed-in zigzag of +-1 request
    shade_phases(ax, exp, t0)
    _frame(ax, "Load achieved vs target (orders per second)", "orders/s", drawn, wide_legend=True)
    return _svg(fig), drawn


CONFIG_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")


def scaling_chart(exp: ExperimentRecord) -> tuple[str, int]:
    """Left: every step (rate, passed or failed, by configuration) and each configuration's fitted pass/fail curve
    with its 50 % point (the capacity) and interval. Right, where shard counts differ: every overloaded step's
    throughput by N, the USL fitted to them, linear scaling and 0.9 x linear from the USL's one-shard throughput."""
    steps = exp.extra.get("steps", [])
    caps = exp.extra.get("capacities", [])
    usl = exp.extra.get("usl") or {}
    fig, (left, right) = plt.subplots(1, 2, figsize=WIDE_FIGSIZE, gridspec_kw={"width_ratios": (2, 1)})
    drawn = 0
    for i, cap in enumerate(caps):
        mine = [st for st in steps if st.get("config") == cap["config"]]
        if not mine:
            continue
        color = CONFIG_COLORS[i % len(CONFIG_COLORS)]
        drawn += 1
        jitter = 0.02 * (i - (len(caps) - 1) / 2)  # configurations side by side at 0 and 1
        rates = [st["rate"] for st in mine]
        for passed, marker in ((True, "o"), (False, "x")):
            pts = [st["rate"] for st in mine if st["passed"] is passed]
            left.plot(pts, [float(passed) + jitter] * len(pts), marker, color=color, ms=4, ls="none",
                      label=f"{cap['config']} steps ({cap['passes']} of {cap['steps']} passed)" if passed else None,
                      gid=f"series-{drawn}" if passed else f"series-{drawn}-failed")
        curve = Curve(tuple(rates), tuple(st["passed"] for st in mine))
        if cap.get("estimate"):
            fine = list(np.geomspace(min(rates), max(rates), 120))
            left.plot(fine, curve.probability(fine), color=color, lw=1, gid=f"curve-{drawn}")
            low, high = cap.get("interval") or (cap["estimate"], cap["estimate"])
            left.axvline(cap["estimate"], color=color, ls="--", lw=1)
            left.axvspan(max(low, min(rates)), min(high, max(rates)), color=color, alpha=0.08,
                         gid=f"capacity-interval-{drawn}")
    left.set_xscale("log")
    left.set_xlabel("orders/s offered (log); dashed: capacity, the 50 % point; shaded: its interval")
    left.set_ylabel("passed (1) / failed (0)")
    left.set_title(textwrap.fill(f"Every step and the pass/fail curves ({exp.extra.get('budgets', 'no budgets')})",
                                 110), fontsize=8)
    left.grid(alpha=0.3)
    if drawn:
        left.legend(fontsize=7, loc="center left")
    throughputs = {int(n): xs for n, xs in (usl.get("throughputs") or {}).items()}
    if throughputs:
        for n, xs in sorted(throughputs.items()):
            right.plot([n] * len(xs), xs, "o", color="#1f77b4", ms=4, label="overloaded steps" if n == min(
                throughputs) else None, gid=f"throughput-{n}")
        if "sigma" in usl:
            ns = list(range(1, max(throughputs) + 2))
            fine = [1 + k / 10 for k in range(10 * max(throughputs))]
            lam, sig, kap = usl["lambda"], usl["sigma"], usl["kappa"]
            right.plot(fine, [lam * n / (1 + sig * (n - 1) + kap * n * (n - 1)) for n in fine], color="#2ca02c",
                       lw=1, label=f"USL (sigma {sig:.3f}, kappa {kap:.4f})", gid="usl")
            right.plot(ns, [lam * n for n in ns], color="grey", ls="--", lw=1, label="linear")
            right.plot(ns, [SCALING_BAR * lam * n for n in ns], color=THRESHOLD_COLORS["red"], ls="--", lw=1,
                       label=f"{SCALING_BAR:g} x linear")
        right.legend(fontsize=7, loc="upper left")
    right.set_title("Throughput of overloaded steps by shard count", fontsize=8)
    right.xaxis.set_major_locator(MaxNLocator(integer=True))
    right.set_xlabel("shards (N)")
    right.set_ylabel("orders/s")
    right.set_ylim(bottom=0)
    right.grid(alpha=0.3)
    return _svg(fig), drawn


BASELINE_COLOR, TREATED_COLOR = "#1f77b4", "#d62728"


def block_chart(prom: PromClient, exp: ExperimentRecord) -> tuple[str, int]:
    """(svg, number of arms drawn) for an experiment that ran cycles."""
    log = exp.cycles
    fig, ax = plt.subplots(figsize=WIDE_FIGSIZE)
    drawn = 0
    phases = {a.phase: a for a in log.arms} if log else {}
    arms = [p for p in exp.phases if p.name in phases]
    if log and arms:
        series = read_blocks(prom, f'shard="{log.shard}"', arms[0].start - 10, arms[-1].end + 10)
        t0 = exp.start
        labelled = set()
        for phase in arms:
            blocks = series.within(phase.start + GUARD_S, phase.end + TAIL_S)
            if series.cells is None or not blocks:
                continue
            treated = phases[phase.name].treated
            color = TREATED_COLOR if treated else BASELINE_COLOR
            counts = np.stack([b.counts for b in blocks])
            p99 = quantiles(series.cells, counts, 0.99) * 1000
            mids = [(b.start + b.end) / 2 - t0 for b in blocks]
            label = ("treated" if treated else "baseline") + " arm: block p99"
            ax.plot(mids, p99, "o", color=color, ms=4, label=None if label in labelled else label,
                    gid=f"series-{drawn + 1}")
            labelled.add(label)
            pooled = quantiles(series.cells, counts.sum(axis=0), 0.99)[0] * 1000
            ax.hlines(pooled, blocks[0].start - t0, blocks[-1].end - t0, color=color, lw=2,
                      label=None if "pooled" in labelled else "arm's pooled p99")
            labelled.add("pooled")
            drawn += 1
    looks = "; ".join(f"after {k.cycles} cycles {k.status}" for k in log.looks) if log else ""
    title = f"Shard {log.shard if log else '?'} p99 per block, by arm ({log.treatment if log else 'no cycles'})"
    _frame(ax, f"{title}" + (f" - looks: {looks}" if looks else ""), "ms", drawn)
    ax.set_ylim(bottom=0)
    return _svg(fig), drawn


def experiment_charts(prom: PromClient, exp: ExperimentRecord) -> list[dict]:
    """All charts of one experiment: [{"title", "svg", "series", "kind"}] (kind "panel" or "wide")."""
    charts = []
    if "capacities" in exp.extra:
        svg, drawn = scaling_chart(exp)
        charts.append({"title": "Capacity from every step", "svg": svg, "series": drawn, "kind": "wide"})
    if exp.cycles is not None:
        svg, drawn = block_chart(prom, exp)
        charts.append({"title": "p99 per block, by arm", "svg": svg, "series": drawn, "kind": "wide"})
    for panel in PANELS:
        svg, drawn = panel_chart(prom, panel, exp)
        charts.append({"title": f"Panel {panel.id}: {panel.title}", "svg": svg, "series": drawn, "kind": "panel"})
    svg, drawn = percentile_chart(exp)
    charts.append({"title": "Client latency percentiles", "svg": svg, "series": drawn, "kind": "panel"})
    for title, (svg, drawn) in (("Load achieved vs target", load_chart(exp)),
                                ("Book depth over time", depth_chart(prom, exp))):
        charts.append({"title": title, "svg": svg, "series": drawn, "kind": "wide"})
    return charts
