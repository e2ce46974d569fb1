"""The harness as a pytest plugin, loaded through the package's ``pytest11`` entry point.

pytest imports entry-point plugins before it parses the command line, so
``--reports-dir /abs/path``, ``--backend`` and ``--profile`` are known
options whatever the other arguments look like and wherever pytest runs. A
``conftest.py`` only registers options when pytest happens to load it before
parsing, which fails as soon as a path-like argument moves the rootdir.

For the same reason the settings the harness relies on live here rather
than in ``pytest.ini``: pytest looks for its ini file from the first existing
path among the arguments, and before it knows the harness's options it takes
the value in ``--reports-dir /tmp/x`` for one. The run then has no ini file,
and without these it would run the long suites, warn about every marker,
write an HTML report that needs a folder of assets beside it, and have no
per-test timeout.
"""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["matchlab.harness.options", "matchlab.harness.stack"]

MARKERS = {
    "smoke": "smoke checks of the whole stack (DESIGN.md §7)",
    "asr1": "ASR 1 latency experiments A1-A4",
    "asr2": "ASR 2 scalability experiments B1-B4",
    "capacity": "capacity search beyond the ASRs (headroom)",
    "faults": "fault injection suite",
    "integration": "starts real processes (shards, broker) on 127.0.0.1",
}
# Run only when asked for with -m (any -m replaces this default, as an addopts -m would).
ON_REQUEST = ("asr1", "asr2", "capacity", "faults")
TEST_TIMEOUT_S = 900  # per test: the longest experiment (full profile) stays well within it


@pytest.hookimpl(tryfirst=True)  # before pytest-html and pytest-timeout read their options
def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    config.option.self_contained_html = True  # the report is one file, to keep or send
    timeout_unset = config.pluginmanager.has_plugin("timeout") and config.option.timeout is None
    if timeout_unset and not (os.environ.get("PYTEST_TIMEOUT") or config.getini("timeout")):
        config.option.timeout = TEST_TIMEOUT_S


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.option.markexpr:
        return
    selected, deselected = [], []
    for item in items:
        (deselected if any(item.get_closest_marker(m) for m in ON_REQUEST) else selected).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected
