"""The experiment report: one self-contained HTML page per run, pictures first.

``reports/run-*/report.html`` renders a ``RunRecord`` and the charts drawn
while the stack was up: a header with the ASR status lines and the run's
facts (profile, backend, budgets, commit, machine) one per line, the verdict
table, then one section per experiment with its six dashboard panels in the
dashboard's 2 x 3 layout and the client-side charts, all on the experiment's
time axis with its phases shaded. No network: SVG and styles are inline. It
is written for every run that measured something, failed and interrupted ones
included (marked incomplete).
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from matchlab.experiment.record import ExperimentRecord, RunRecord
from matchlab.reporting.summary import COLORS, verdict_table_html

REPORT_FILE = "report.html"
STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#1f2328;max-width:1500px}
h1{font-size:1.5em;margin:0 0 .3em} h2{margin-top:1.6em;border-bottom:1px solid #d0d7de;padding-bottom:.2em}
.status{font-size:1.25em;margin:.2em 0} .facts{font-size:.92em;color:#444;margin:.6em 0 1em}
.facts div{margin:.1em 0} .incomplete{background:#fff3cd;border:1px solid #e0c060;padding:.6em;margin:.6em 0}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:8px} .grid svg,.wide svg{width:100%;height:auto}
.chart{border:1px solid #d0d7de;border-radius:4px;padding:4px;background:#fff}
.legend span{display:inline-block;margin-right:1.2em} .sw{display:inline-block;width:1.4em;height:.8em;vertical-align:middle}
table{border-collapse:collapse;font-size:.88em} td,th{border:1px solid #d0d7de;padding:4px;vertical-align:top}
details summary{cursor:pointer;color:#0969da}
"""


def _legend() -> str:
    items = (("#d0d0d0", "warm-up (steered or excluded)"), ("#1f77b4", "measured window (bar on top)"),
             ("#f4b6b6", "broker outage"))
    return '<div class="legend">' + "".join(
        f'<span><span class="sw" style="background:{c}"></span> {escape(t)}</span>' for c, t in items) + "</div>"


def _cycles_section(exp: ExperimentRecord) -> str:
    """A comparison's design, each look it took and why it stopped."""
    log = exp.cycles

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:+.1%}"

    looks = "".join(f"<tr><td>{k.cycles}</td><td>{k.level:.2%}</td><td>{escape(k.status)}</td><td>{pct(k.estimate)}</td>"
                    f"<td>{pct(k.low)} to {pct(k.high)}</td><td>{k.elapsed_s:.0f} s</td></tr>" for k in log.looks)
    return (f"<p><b>Cycles:</b> {escape(log.treatment)}; {escape(log.design)}. <b>Stopped:</b> {escape(log.stopped)}. "
            f"<b>CPUs:</b> {escape(log.isolation)}.</p>"
            "<table><tr><th>look after cycles</th><th>error rate spent</th><th>status</th><th>estimate</th>"
            f"<th>interval</th><th>time</th></tr>{looks}</table>")


def _experiment_section(exp: ExperimentRecord, charts: list[dict], grafana: str | None) -> str:
    rows = "".join(
        f"<tr><td>{escape(p.name)}</td><td>{p.start - exp.start:.0f} s</td><td>{p.end - p.start:.0f} s</td>"
        f"<td>{p.order_rate:,.1f}/s</td><td>{p.load.achieved_rate:,.1f}/s</td><td>{p.load.latency_ms['p99']:.2f} ms</td>"
        f"<td>{p.load.error_ratio:.2%}</td><td>{', '.join(f'{k} at {v - exp.start:.0f} s' for k, v in p.marks.items())}</td></tr>"
        for p in exp.phases)
    parts = [f'<h2 id="{escape(exp.id)}">{escape(exp.id)}: {escape(exp.title)}</h2>',
             f"<p>{escape(exp.route)}; seed: {escape(exp.seed)}</p>"]
    parts += [f"<p><small>{escape(n)}</small></p>" for n in exp.notes]
    if exp.cycles is not None:
        parts.append(_cycles_section(exp))
    parts.append("<table><tr><th>phase</th><th>starts</th><th>lasts</th><th>offered</th><th>achieved</th>"
                 f"<th>client p99</th><th>errors</th><th>marks</th></tr>{rows}</table>")
    if grafana:
        frm, to = int((exp.start - 10) * 1000), int((exp.end + 10) * 1000)
        parts.append(f'<p><a href="{escape(grafana)}/d/me-experiment?from={frm}&amp;to={to}">'
                     "this experiment's time range in Grafana</a> (phases annotated there)</p>")
    parts.append(_legend())
    panels = [c for c in charts if c.get("kind") == "panel"]
    wide = [c for c in charts if c.get("kind") != "panel"]
    parts.append('<div class="grid">' + "".join(f'<div class="chart">{c["svg"]}</div>' for c in panels) + "</div>")
    parts.extend(f'<div class="chart wide">{c["svg"]}</div>' for c in wide)
    if not charts:
        parts.append("<p><b>No charts:</b> they could not be rendered for this experiment (see the run log).</p>")
    return "\n".join(parts)


def render_report(record: RunRecord, charts: dict[str, list[dict]], *, complete: bool, grafana: str | None,
                  grafana_note: str = "", budgets: str = "", history: tuple[str, str] | None = None) -> str:
    """``history``: (account, inline SVG) of a headline figure over earlier runs (``--history-plot``)."""
    outcomes = record.outcomes()
    head = [(f"<!doctype html><html><head><meta charset='utf-8'><title>matchlab run {escape(record.facts.get('run', ''))}"
            f"</title><style>{STYLE}</style></head><body>"), "<h1>Matching-engine experiment report</h1>"]
    if not complete:
        head.append('<div class="incomplete"><b>Incomplete run</b>: interrupted or failed before every experiment '
                    "finished; what was measured up to then is below.</div>")
    for o in outcomes:
        head.append(f'<div class="status"><b>{escape(o.asr)}: <span style="color:{COLORS[o.status]}">{escape(o.label)}'
                    f"</span></b> &mdash; {escape(o.reason)}</div>")
    if not outcomes:
        head.append("<p>No ASR criterion was evaluated in this run.</p>")
    from matchlab.experiment.profiles import PROFILES

    profile = PROFILES.get(record.profile)
    facts = [("profile", (profile.full_adds or profile.scaling_note) if profile else record.profile),
             ("backend", record.backend),
             ("CPU budgets", budgets or record.facts.get("CPU budgets")
              or "none enforced: every process may use every core of this machine"),
             ("commit", record.facts.get("commit", "unknown")),
             ("machine", record.facts.get("machine", "unknown")),
             ("Grafana", grafana or f"not part of this stack{': ' + grafana_note if grafana_note else ''}"),
             *([("load", record.facts["load"])] if record.facts.get("load") else [])]  # not from pytest's process
    head.append('<div class="facts">' + "".join(f"<div><b>{escape(k)}</b>: {escape(v)}</div>" for k, v in facts)
                + "</div>")
    toc = " · ".join(f'<a href="#{escape(e)}">{escape(e)}</a>' for e in record.experiments)
    body = [f"<p>Experiments: {toc}</p>" if toc else "", "<h2>Verdicts</h2>", verdict_table_html(record)]
    for exp_id, exp in record.experiments.items():
        body.append(_experiment_section(exp, charts.get(exp_id, []), grafana))
    if history is not None:
        account, svg = history
        body += ['<h2 id="history">History</h2>', f"<p>{escape(account)}</p>"]
        if svg:
            body.append(f'<div class="chart wide">{svg}</div>')
    return "\n".join([*head, *body, "</body></html>"])


def write_report(path: Path, record: RunRecord, charts: dict[str, list[dict]], **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(record, charts, **kw))
    return path
