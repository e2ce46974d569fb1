"""The run summary as HTML (top of the pytest-html report) and as terminal lines.

Both render a ``RunRecord``: ASR statuses, every criterion with its observed
value, threshold, verdict and query, and the facts of the run (backend,
versions, cores, profile and its scaling).
"""

from __future__ import annotations

from html import escape

from matchlab.experiment.record import RunRecord
from matchlab.observe.verdicts import Status

COLORS = {Status.PASS: "#1a7f37", Status.CONDITIONAL_PASS: "#9a6700", Status.FAIL: "#cf222e"}


def _value(v) -> str:
    if v.observed is None:
        return "no data"
    unit = v.criterion.unit
    if unit == "s":
        return f"{v.observed * 1000:.2f} ms"
    return f"{v.observed:.4g}{(' ' + unit) if unit else ''}"


def _threshold(c) -> str:
    if c.unit == "s":
        return f"{c.comparison} {c.threshold * 1000:g} ms"
    return f"{c.comparison} {c.threshold:g}{(' ' + c.unit) if c.unit else ''}"


def summary_html(record: RunRecord) -> str:
    parts = ['<div class="matchlab-summary" style="font-family:sans-serif">', "<h2>Matching-engine experiment: verdicts</h2>"]
    outcomes = record.outcomes()
    if not outcomes:
        parts.append("<p>No ASR criterion was evaluated in this run.</p>")
    for o in outcomes:
        parts.append(
            f'<p style="font-size:1.3em"><b>{escape(o.asr)}: <span style="color:{COLORS[o.status]}">{o.status.value}</span></b>'
            f" &mdash; {escape(o.reason)}</p>"
        )
    if record.verdicts:
        parts.append('<table border="1" cellpadding="4" style="border-collapse:collapse;font-size:0.9em">')
        parts.append("<tr><th>ASR</th><th>exp.</th><th>criterion</th><th>role</th><th>observed</th><th>threshold</th>"
                     "<th>verdict</th><th>query and detail</th></tr>")
        for v in record.verdicts:
            c = v.criterion
            color = "#1a7f37" if v.passed else "#cf222e"
            parts.append(
                f"<tr><td>{escape(c.asr)}</td><td>{escape(c.experiment)}</td><td>{escape(c.name)}</td>"
                f"<td>{escape(c.role.value)}</td><td>{escape(_value(v))}</td><td>{escape(_threshold(c))}</td>"
                f'<td style="color:{color}"><b>{"PASS" if v.passed else "FAIL"}</b></td>'
                f"<td><code>{escape(v.query)}</code><br>{escape(v.detail)}</td></tr>"
            )
        parts.append("</table>")
    facts = {"backend": record.backend, "profile": record.profile, "scaling": record.scaling_note, **record.facts}
    parts.append("<h3>Run</h3><ul>")
    parts.extend(f"<li><b>{escape(k)}</b>: {escape(str(v))}</li>" for k, v in facts.items())
    parts.append("</ul></div>")
    return "\n".join(parts)


def summary_lines(record: RunRecord) -> list[str]:
    lines = [f"{o.asr}: {o.status.value} ({o.reason})" for o in record.outcomes()]
    lines += [v.message() for v in record.verdicts]
    return lines
