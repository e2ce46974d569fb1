"""Two runs' results side by side: which figures are compared, from which stored evidence, and how they read.

Per experiment: each phase's client latency (p50, p99 from its HdrHistograms:
the measured part's seconds summed, or the whole phase's for results that
kept no per-second histograms) and its rate of answered orders per second (from the phase timeline, the
measured part only); then every criterion both runs evaluated. A criterion
whose verdict kept its bucket vectors is compared with a bootstrap, and a
p99 criterion's window also by its median (same buckets, once per window);
one that kept a single number is shown side by side without a test, and says so.

A run of ``--repeat N`` keeps each experiment's repetitions 2..N beside the
first (``repetitions``): every figure then uses all N samples, the histograms
per repetition (``stats``: pooled point, two-stage bootstrap), the per-second
rates concatenated (their test says how many seconds of how many repetitions),
and a criterion's buckets from every repetition's evidence. Runs of one
repetition, older ones included, compare as they always did.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

from matchlab.compare.stats import ALPHA, Change, Histogram, quantile_change, rise_change, shift_change
from matchlab.errors import ConfigError
from matchlab.loadgen.results import decode_histogram
from matchlab.observe.verdicts import LATENCY, RATIO, render

RESULTS_FILE = "results.json"
RATE = "orders/s"
NO_TEST = "one value per run: no test"


class IncompleteRunError(ConfigError):
    """A results file of a run that did not finish: its figures would compare a part with a whole."""


def load_results(path: Path) -> dict:
    """A run folder's results.json (or the file itself), refused with one line when unreadable or incomplete."""
    file = path / RESULTS_FILE if path.is_dir() else path
    try:
        doc = json.loads(file.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {file}: {exc.strerror} (give a reports/run-* folder or its results.json)") from None
    except ValueError as exc:
        raise ConfigError(f"{file} is not JSON: {exc}") from None
    complete = doc.get("facts", {}).get("complete")
    if complete != "yes":
        raise IncompleteRunError(f"{file} is from an incomplete run (complete: {complete or 'not recorded'}); "
                                 "compare needs runs that finished")
    return doc


@dataclass(frozen=True)
class Row:
    experiment: str
    what: str
    unit: str
    lower_is_better: bool
    a: float | None
    b: float | None
    change: Change | None = None  # None: no test could be made (one value per run, or too few samples)
    test: str = NO_TEST

    @property
    def reading(self) -> str:
        if self.change is None:
            return "n/a"
        if not self.change.significant:
            return "~"
        return "worse" if (self.change.delta > 0) == self.lower_is_better else "better"

    def regression(self) -> float | None:
        """How much worse B is, as a fraction of A (ratios: in points), when the change is significant."""
        if self.reading != "worse":
            return None
        if self.unit == RATIO:
            return abs(self.change.delta)
        rel = self.change.relative
        return abs(rel) if rel is not None else math.inf


# -- evidence into histograms ------------------------------------------------------------------------


def client_histogram(encoded: str) -> Histogram:
    """An encoded HdrHistogram's recorded values (microseconds) as point cells in seconds."""
    return client_histogram_of(decode_histogram(encoded))


def client_histogram_of(hist) -> Histogram:
    values, counts = [], []
    for item in hist.get_recorded_iterator():
        values.append(item.value_iterated_to / 1e6)
        counts.append(item.count_added_in_this_iter_step)
    return Histogram.points(values, counts)


def samples(exp: dict) -> list[dict]:
    """Every repetition's record of an experiment: the first, then those ``--repeat`` added."""
    return [exp, *exp.get("repetitions", [])]


def window_histogram(phase: dict) -> tuple[str, Histogram] | None:
    """The client latencies of the phase's measured part (the sum of its seconds' histograms), or of the
    whole phase when the seconds carry none; None when there is neither. Returns (which window, histogram)."""
    load = phase.get("load", {})
    offset = phase.get("marks", {}).get("measured", phase["start"]) - phase["start"]
    seconds = [r["histogram"] for r in load.get("timeline", []) if r.get("histogram") and r["second"] >= offset]
    if seconds:
        total = decode_histogram(seconds[0])
        for encoded in seconds[1:]:
            total.add(decode_histogram(encoded))
        return "measured", client_histogram_of(total)
    if load.get("histogram"):
        return "whole phase", client_histogram(load["histogram"])
    return None


def bucket_histogram(doc: dict) -> Histogram:
    return Histogram.from_cumulative([float(b) for b in doc["le"]], doc["cumulative"])


def measured_rates(phase: dict) -> list[float]:
    """Answered orders per second over the phase's measured part, the last (partial) second left out."""
    rows = phase.get("load", {}).get("timeline", [])
    if not rows:
        return []
    offset = phase.get("marks", {}).get("measured", phase["start"]) - phase["start"]
    last = max(r["second"] for r in rows)
    return [float(r["ok"]) for r in rows if offset <= r["second"] < last]


# -- rows -----------------------------------------------------------------------------------------------


def window_histograms(phases: list[dict]) -> tuple[str, list[Histogram]] | None:
    """One histogram per repetition of a phase (``window_histogram``), and which window they cover."""
    found = [h for h in map(window_histogram, phases) if h is not None]
    if not found:
        return None
    windows = {w for w, _ in found}
    return (windows.pop() if len(windows) == 1 else "measured or whole phase"), [h for _, h in found]


def phase_rows(exp_id: str, a: dict, b: dict) -> list[Row]:
    rows = []
    a_phases, b_phases = ({}, {})
    for runs, into in ((samples(a), a_phases), (samples(b), b_phases)):
        for exp in runs:
            for phase in exp.get("phases", []):
                into.setdefault(phase["name"], []).append(phase)
    for name, pbs in b_phases.items():
        pas = a_phases.get(name)
        if pas is None:
            continue
        label = exp_id if name == exp_id else f"{exp_id}/{name}"
        ha, hb = window_histograms(pas), window_histograms(pbs)
        if ha and hb:
            window = ha[0] if ha[0] == hb[0] else "measured in one run, whole phase in the other"
            for q in (0.5, 0.99):
                change = quantile_change(ha[1], hb[1], q)
                rows.append(Row(exp_id, f"{label} client p{q * 100:g} ({window})", LATENCY, True,
                                change.a if change else None, change.b if change else None, change,
                                change.test if change else "empty histogram"))
        ra, rb = [r for p in pas for r in measured_rates(p)], [r for p in pbs for r in measured_rates(p)]
        if ra and rb:
            change = shift_change(ra, rb)
            if change is not None and (len(pas) > 1 or len(pbs) > 1):
                change = replace(change, test=f"{change.test[:-1]} of {len(pas)} vs {len(pbs)} repetitions, "
                                              "concatenated)")
            rows.append(Row(exp_id, f"{label} answered orders/s", RATE, False,
                            change.a if change else None, change.b if change else None, change,
                            change.test if change else "fewer than 5 seconds: no test"))
    return rows


def evidence_samples(verdict: dict) -> list[dict]:
    """A criterion's evidence per repetition (``worst_of_repetitions`` kept them all), or its one evidence."""
    ev = verdict.get("evidence") or {}
    reps = [r.get("evidence") or {} for r in ev.get("repetitions", [])]
    return reps or [ev]


def criterion_row(a: dict, b: dict) -> Row:
    crit = b["criterion"]
    lower = crit["comparison"] in ("<", "<=")
    what = f"{crit['id']} ({crit['name']})"
    ea, eb = evidence_samples(a), evidence_samples(b)
    kinds = {e.get("kind") for e in ea + eb}
    change, why = None, NO_TEST
    if kinds == {"quantile"}:
        change = quantile_change([bucket_histogram(e["buckets"]) for e in ea],
                                 [bucket_histogram(e["buckets"]) for e in eb], eb[0]["q"])
        why = "server buckets, " + (change.test if change else "empty window")
    elif kinds <= {"quantile_rise", "block_rise"} and kinds:  # a rise between two windows, or between arms
        change = rise_change([(bucket_histogram(e["base"]), bucket_histogram(e["other"])) for e in ea],
                             [(bucket_histogram(e["base"]), bucket_histogram(e["other"])) for e in eb], eb[0]["q"])
        why = "server buckets, " + (change.test if change else "empty window")
    if change is not None:
        return Row(crit["experiment"], what, crit.get("unit", ""), lower, change.a, change.b, change, why)
    return Row(crit["experiment"], what, crit.get("unit", ""), lower, a.get("observed"), b.get("observed"), None, why)


def server_median_row(a: dict, b: dict) -> Row | None:
    """The median of a p99 criterion's window, from the same stored buckets: a shift of the whole distribution
    (a fixed delay) shows there long before it clears the noise of a p99 from a few thousand samples."""
    ea, eb = evidence_samples(a), evidence_samples(b)
    if {e.get("kind") for e in ea + eb} != {"quantile"} or eb[0].get("q") == 0.5:
        return None
    change = quantile_change([bucket_histogram(e["buckets"]) for e in ea],
                             [bucket_histogram(e["buckets"]) for e in eb], 0.5)
    crit = b["criterion"]
    return Row(crit["experiment"], f"{crit['id']} window: server p50 (shard {eb[0].get('shard', '?')})", LATENCY, True,
               change.a if change else None, change.b if change else None, change,
               "server buckets, " + (change.test if change else "empty window"))


def criterion_rows(pairs: list[tuple[dict, dict]]) -> list[Row]:
    """Each criterion's row, and after the first criterion of each window its server p50 (once per window)."""
    rows, windows = [], set()
    for a, b in pairs:
        rows.append(criterion_row(a, b))
        key = (b["criterion"]["experiment"], (b.get("evidence") or {}).get("shard"), str(b.get("window")))
        if key not in windows:
            median = server_median_row(a, b)
            if median is not None:
                windows.add(key)
                rows.append(median)
    return rows


def compare_runs(a: dict, b: dict) -> list[Row]:
    """Every figure both runs hold, experiment by experiment (B's order)."""
    rows: list[Row] = []
    a_exps = a.get("experiments", {})
    a_crits = {c["criterion"]["id"]: c for c in a.get("criteria", [])}
    b_crits = [c for c in b.get("criteria", []) if c["criterion"]["id"] in a_crits]
    for exp_id, exp_b in b.get("experiments", {}).items():
        if exp_id in a_exps:
            rows += phase_rows(exp_id, a_exps[exp_id], exp_b)
        rows += criterion_rows([(a_crits[c["criterion"]["id"]], c) for c in b_crits
                                if c["criterion"]["experiment"] == exp_id])
    seen = set(b.get("experiments", {}))
    rows += criterion_rows([(a_crits[c["criterion"]["id"]], c) for c in b_crits
                            if c["criterion"]["experiment"] not in seen])
    return rows


# -- text -------------------------------------------------------------------------------------------------


def value_text(value: float | None, unit: str) -> str:
    if unit == RATE:
        return "no data" if value is None else f"{value:,.1f}/s"
    return render(value, unit)


def signed_text(value: float, unit: str) -> str:
    if unit == LATENCY:
        return f"{value * 1000:+.2f} ms"
    if unit == RATIO:
        return f"{value * 100:+.1f} pt"
    if unit == RATE:
        return f"{value:+,.1f}/s"
    return f"{value:+.4g}"


def row_cells(row: Row) -> list[str]:
    c = row.change
    if c is None:
        delta = ("" if row.a is None or row.b is None else signed_text(row.b - row.a, row.unit))
        return [row.what, value_text(row.a, row.unit), value_text(row.b, row.unit), delta, "", "", row.reading, row.test]
    rel = f" ({c.relative:+.1%})" if c.relative is not None and row.unit != RATIO else ""
    return [row.what, value_text(c.a, row.unit), value_text(c.b, row.unit), signed_text(c.delta, row.unit) + rel,
            f"[{signed_text(c.low, row.unit)}, {signed_text(c.high, row.unit)}]",
            f"±{signed_text(c.detectable, row.unit)[1:]}", row.reading, row.test]


HEADER = ["figure", "A", "B", "change", "95 % interval", "detectable", "reading", "test"]


def table_lines(rows: list[Row]) -> list[str]:
    """A plain-text table per experiment, columns aligned."""
    cells = [HEADER] + [row_cells(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER) - 1)]

    def line(c: list[str]) -> str:
        return "  ".join(x.ljust(w) for x, w in zip(c, widths)) + "  " + c[-1]

    out, current = [], None
    for row, c in zip(rows, cells[1:]):
        if row.experiment != current:
            current = row.experiment
            out += ["", f"== {current} ==", line(HEADER)]
        out.append(line(c))
    return out


def legend() -> str:
    return (f"reading: better / worse when the 95 % interval of B - A excludes 0 (two-sided, alpha {ALPHA:g}), "
            "~ when it does not; n/a: no test possible. detectable: the interval's half-width, the smallest change "
            "these data could tell from noise.")
