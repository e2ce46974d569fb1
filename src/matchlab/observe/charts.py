"""Rendering an experiment's evidence as PNG charts (matplotlib, no display needed).

The six dashboard panels come from range queries over the experiment's own
window, with the same expressions and threshold lines as Grafana
(``panels.PANELS``); then the client's latency percentile curve, book depth
over time and the load achieved against the target. Each chart is returned
as base64 PNG so the HTML report embeds it and opens offline.
"""

from __future__ import annotations

import base64
import io
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from matchlab.experiment.record import ExperimentRecord  # noqa: E402
from matchlab.observe.panels import PANELS, Panel  # noqa: E402
from matchlab.observe.promql import PromClient  # noqa: E402

STEP_S = 5.0
MARGIN_S = 10.0
FIGSIZE = (7.5, 3.2)
THRESHOLD_COLORS = {"red": "#d62728", "yellow": "#e6b800", "green": "#2ca02c"}


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _legend(fmt: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{(\w+)\}\}", lambda m: labels.get(m.group(1), ""), fmt)


def _scale(unit: str) -> tuple[float, str]:
    return (1000.0, "ms") if unit == "s" else (1.0, {"short": "", "reqps": "requests/s"}.get(unit, unit))


def panel_chart(prom: PromClient, panel: Panel, start: float, end: float, t0: float) -> tuple[str, int]:
    """One dashboard panel over [start, end]; returns (png, number of series with data)."""
    factor, unit = _scale(panel.unit)
    fig, ax = plt.subplots(figsize=FIGSIZE)
    drawn = 0
    for target in panel.targets:
        for series in prom.query_range(target.expr, start, end, STEP_S):
            pts = [(t - t0, v * factor) for t, v in series.points if v == v]  # drop NaN
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], label=_legend(target.legend, series.labels), lw=1.4)
                drawn += 1
    for th in panel.thresholds:
        ax.axhline(th.value * factor, color=THRESHOLD_COLORS.get(th.color, "grey"), ls="--", lw=1, label=th.label)
    ax.set_title(panel.title, fontsize=10)
    ax.set_xlabel("seconds since experiment start")
    if panel.unit == "s" and drawn:
        ax.set_yscale("log")  # milliseconds of data and a 200 ms bar on one chart
    if unit:
        ax.set_ylabel(unit)
    if drawn == 0:
        ax.text(0.5, 0.5, "no data for this window", transform=ax.transAxes, ha="center", color="#d62728")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", ncol=2)
    return _png(fig), drawn


def percentile_chart(exp: ExperimentRecord) -> str:
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for phase in exp.phases:
        lat = phase.load.latency_ms
        keys = sorted((float(k[1:]), k) for k in lat if k.startswith("p"))
        xs = [1 / (1 - q / 100) for q, _ in keys]
        ax.plot(xs, [lat[k] for _, k in keys], marker="o", label=f"{phase.name} (n={lat['count']})")
    ax.set_xscale("log")
    ticks = [2, 10, 100, 1000, 10000]
    ax.set_xticks(ticks, ["p50", "p90", "p99", "p99.9", "p99.99"])
    ax.axhline(200, color=THRESHOLD_COLORS["red"], ls="--", lw=1, label="200 ms")
    ax.set_yscale("log")
    ax.set_ylabel("ms (from scheduled send)")
    ax.set_title("Client-side latency by percentile (HdrHistogram)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return _png(fig)


def depth_chart(prom: PromClient, start: float, end: float, t0: float) -> tuple[str, int]:
    """Resting orders per shard and side; returns (png, number of series drawn)."""
    fig, ax = plt.subplots(figsize=FIGSIZE)
    drawn = 0
    for series in prom.query_range("sum by (shard, side) (me_orderbook_depth)", start, end, STEP_S):
        pts = series.points
        if not pts:
            continue
        ax.plot([t - t0 for t, _ in pts], [v for _, v in pts], label=f"shard {series.labels.get('shard')} {series.labels.get('side')}")
        drawn += 1
    ax.set_title("Book depth over time (resting orders per shard and side)", fontsize=10)
    ax.set_xlabel("seconds since experiment start")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=3)
    return _png(fig), drawn


def load_chart(exp: ExperimentRecord) -> str:
    fig, ax = plt.subplots(figsize=FIGSIZE)
    t0 = exp.start
    for phase in exp.phases:
        offset = phase.start - t0
        secs = [offset + s.second for s in phase.load.timeline]
        ax.plot(secs, [s.scheduled for s in phase.load.timeline], color="grey", ls="--", lw=1)
        ax.plot(secs, [s.ok for s in phase.load.timeline], lw=1.2, label=f"{phase.name} answered 200")
        errs = [sum(s.errors.values()) + s.dropped for s in phase.load.timeline]
        if any(errs):
            ax.plot(secs, errs, color=THRESHOLD_COLORS["red"], lw=1, label=f"{phase.name} errors + dropped")
    ax.plot([], [], color="grey", ls="--", label="target (scheduled)")
    ax.set_title("Load achieved vs target (orders per second)", fontsize=10)
    ax.set_xlabel("seconds since experiment start")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


def experiment_charts(prom: PromClient, exp: ExperimentRecord) -> list[dict]:
    """All charts of one experiment: [{"title", "png", "series"}]."""
    start, end = exp.start - MARGIN_S, exp.end + MARGIN_S
    charts = []
    for panel in PANELS:
        png, drawn = panel_chart(prom, panel, start, end, exp.start)
        charts.append({"title": f"Panel {panel.id}: {panel.title}", "png": png, "series": drawn})
    charts.append({"title": "Client latency percentiles", "png": percentile_chart(exp), "series": len(exp.phases)})
    depth_png, depth_series = depth_chart(prom, start, end, exp.start)
    charts.append({"title": "Book depth over time", "png": depth_png, "series": depth_series})
    charts.append({"title": "Load achieved vs target", "png": load_chart(exp), "series": len(exp.phases)})
    return charts
