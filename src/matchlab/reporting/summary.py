"""The run summary as HTML (top of the pytest-html report) and as terminal lines.

Both render a ``RunRecord``: ASR statuses with the profile in them, every
criterion with its observed value and threshold in their natural units, its
status and resolving power, the query behind it, and the facts of the run
(backend, versions, cores, profile and its scaling).
"""

from __future__ import annotations

from html import escape

from matchlab.experiment.record import RunRecord
from matchlab.observe.verdicts import Status, render

COLORS = {Status.PASS: "#1a7f37", Status.CONDITIONAL_PASS: "#9a6700", Status.FAIL: "#cf222e",
          Status.INCONCLUSIVE: "#6e7781"}


def summary_html(record: RunRecord, report_link: str | None = None) -> str:
    parts = ['<div class="matchlab-summary" style="font-family:sans-serif">', "<h2>Matching-engine experiment: verdicts</h2>"]
    if report_link:
        parts.append(f'<p style="font-size:1.15em"><a href="{escape(report_link)}">The experiment report: every '
                     "experiment's panels with its phases marked</a></p>")
    outcomes = record.outcomes()
    if not outcomes:
        parts.append("<p>No ASR criterion was evaluated in this run.</p>")
    for o in outcomes:
        parts.append(
            f'<p style="font-size:1.3em"><b>{escape(o.asr)}: <span style="color:{COLORS[o.status]}">{escape(o.label)}</span>'
            f"</b> &mdash; {escape(o.reason)}</p>"
        )
    if outcomes and record.profile != "full":
        from matchlab.experiment.profiles import PROFILES

        parts.append(f"<p><i>{escape(PROFILES[record.profile].full_adds)}</i></p>")
    parts.append(verdict_table_html(record))
    facts = {"backend": record.backend, "profile": record.profile, "scaling": record.scaling_note, **record.facts}
    parts.append("<h3>Run</h3><ul>")
    parts.extend(f"<li><b>{escape(k)}</b>: {escape(str(v))}</li>" for k, v in facts.items())
    parts.append("</ul></div>")
    return "\n".join(parts)


def verdict_table_html(record: RunRecord) -> str:
    """Criterion, observed and threshold in their units, status, resolving power, detail; the PromQL folded away."""
    if not record.verdicts:
        return "<p>No criterion was evaluated.</p>"
    parts = ['<table border="1" cellpadding="4" style="border-collapse:collapse;font-size:0.9em">',
             ("<tr><th>ASR</th><th>exp.</th><th>criterion</th><th>role</th><th>observed</th><th>threshold</th>"
             "<th>status</th><th>resolving power</th><th>detail and query</th></tr>")]
    for v in record.verdicts:
        c = v.criterion
        power = "" if v.resolving_power is None else f"&plusmn;{escape(render(v.resolving_power, c.unit))}"
        parts.append(
            f"<tr><td>{escape(c.asr)}</td><td>{escape(c.experiment)}</td><td>{escape(c.name)}"
            f"<br><small><code>{escape(c.id)}</code></small></td>"
            f"<td>{escape(c.role.value)}</td><td>{escape(render(v.observed, c.unit))}</td>"
            f"<td>{escape(c.comparison)} {escape(render(c.threshold, c.unit))}</td>"
            f'<td style="color:{COLORS[v.status]}"><b>{v.status.value}</b></td><td>{power}</td>'
            f"<td>{escape(v.detail)}<details><summary>query</summary><code>{escape(v.query)}</code></details></td></tr>"
        )
    parts.append("</table>")
    return "\n".join(parts)


def summary_lines(record: RunRecord) -> list[str]:
    lines = [record.status_line(o) for o in record.outcomes()]
    lines += [v.message() for v in record.verdicts]
    return lines
