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
per-test timeout. Once the options are known the plugin also runs pytest's
ini-file search again (``find_the_ini_file_again``), so such a run gets the
repository's root folder and ``pytest.ini`` as any other.
"""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["matchlab.harness.options", "matchlab.harness.stack"]

MARKERS = {
    "smoke": "smoke checks of the whole stack",
    "asr1": "ASR 1 latency experiments A1-A4",
    "asr2": "ASR 2 scalability experiments B1-B4",
    "capacity": "capacity search beyond the ASRs (headroom)",
    "faults": "fault injection suite",
    "calibration": "shams and injected effects: how often A4 and B5 decide wrongly (not part of any ASR)",
    "integration": "starts real processes (shards, broker) on 127.0.0.1",
}
# Run only when asked for with -m (any -m replaces this default, as an addopts -m would).
ON_REQUEST = ("asr1", "asr2", "capacity", "faults", "calibration")
TEST_TIMEOUT_S = 900  # per test: the longest experiment (full profile) stays well within it


@pytest.hookimpl(tryfirst=True)  # before pytest loads the conftests, which needs the right root
def pytest_load_initial_conftests(early_config: pytest.Config, args: list[str]) -> None:
    find_the_ini_file_again(early_config, args)


def find_the_ini_file_again(config: pytest.Config, args: list[str]) -> None:
    """Look for the ini file again, now that the harness's options are known.

    pytest picks its root folder and ini file before it loads entry-point plugins, so in
    ``pytest --reports-dir /tmp/x`` it takes /tmp/x (when it exists) for a test path: the root
    becomes /tmp/x, the repository's ``pytest.ini`` is missed (its ``addopts`` and ``testpaths``
    with it) and pytest's cache lands in the reports folder. Now the arguments parse right, so the
    same search (pytest's own ``determine_setup``) is run again with the real test paths. Only when
    pytest found no ini file and the user chose none; with a pytest whose internals differ, nothing
    changes (the markers and defaults above hold anyway).
    """
    from _pytest.config.findpaths import determine_setup

    ns = config.known_args_namespace
    if config.inipath is not None or getattr(ns, "inifilename", None) or getattr(ns, "rootdir", None):
        return
    try:
        rootpath, inipath, inicfg, ignored = determine_setup(
            inifile=None, override_ini=ns.override_ini, args=ns.file_or_dir, rootdir_cmd_arg=None,
            invocation_dir=config.invocation_params.dir)
    except (AttributeError, TypeError, ValueError):
        return
    if inipath is None or not all(hasattr(config, a) for a in ("_rootpath", "_inipath", "_inicfg", "_inicache")):
        return
    if ns.confcutdir == str(config.rootpath):  # pytest's default, derived from the wrong root
        ns.confcutdir = str(inipath.parent)
    config._rootpath, config._inipath, config._inicfg = rootpath, inipath, inicfg
    config._ignored_config_files = ignored
    config._inicache.clear()  # values read from the (empty) ini so far
    config._parser.extra_info.update(rootdir=str(rootpath), inifile=str(inipath))
    args[:] = [*config.getini("addopts"), *args]  # what pytest does with the ini's addopts; parsed next


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
