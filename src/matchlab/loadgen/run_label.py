"""The ``run`` label on the load generator's remote-written series: a per-run secret.

The error-rate verdicts read the client's counters from Prometheus, which
accept them through its remote-write receiver. Whoever can reach that
receiver could write a ``loadgen_requests_total`` series of their own; it
can only count towards a verdict if it carries this run's label, and the
label's value ends in a random suffix drawn in the harness' process and sent
nowhere but to Prometheus (the run folder's name, which order ids carry and
anyone reading ``/book`` or the topics sees, is not enough to guess it).
"""

from __future__ import annotations

import secrets
import threading

_lock = threading.Lock()
_labels: dict[str, str] = {}


def run_label(run_id: str) -> str:
    """The ``run`` label value for ``run_id``: the same for the whole process, random across processes."""
    with _lock:
        if run_id not in _labels:
            _labels[run_id] = f"{run_id}-{secrets.token_hex(8)}"
        return _labels[run_id]


def run_matcher(run_id: str) -> str:
    """The PromQL label matcher selecting this run's client series, e.g. ``run="run-…-3f9a…"``."""
    return f'run="{run_label(run_id)}"'
