"""The harness's pytest options and markers, as the plugin registers them with pytest."""

from __future__ import annotations

import pytest

from matchlab.docs_reference.markdown import cell, code, document, header, table

PLUGIN = "matchlab.pytest_plugin"


class _ParserCatcher:
    """A plugin whose only hook receives the parser every plugin adds its options to."""

    parser: pytest.Parser

    def pytest_addoption(self, parser: pytest.Parser) -> None:
        self.parser = parser


def registered_options() -> list[tuple[str, list]]:
    """(group title, its options) for every option the plugin adds, in the order it adds them.

    A fresh pytest configuration is built with pytest's own plugins, the options it
    knows are noted, then the plugin is loaded (with the plugins it names): what is
    new is the harness's, however the plugin chooses to declare it.
    """
    from _pytest.config import get_config

    config = get_config()
    catcher = _ParserCatcher()
    config.pluginmanager.register(catcher, "matchlab-docs-reference")

    def names() -> set[str]:
        return {n for g in catcher.parser._groups for o in g.options for n in o.names()}

    known = names()
    config.pluginmanager.import_plugin(PLUGIN)
    groups = []
    for group in catcher.parser._groups:
        new = [o for o in group.options if not set(o.names()) & known]
        if new:
            groups.append((_title(group), new))
    return groups


def _title(group) -> str:
    """The group's description as ``pytest --help`` shows it (its attribute moved between pytest versions)."""
    described = getattr(group, "description", None) or getattr(getattr(group, "_arggroup", None), "title", None)
    return described or group.name


def _invocation(option) -> str:
    attrs = option.attrs()
    forms = ", ".join(option.names())
    if attrs.get("action") in ("store_true", "store_false", "count"):
        return forms
    if attrs.get("choices"):
        return f"{forms} {{{','.join(map(str, attrs['choices']))}}}"
    return f"{forms} {attrs.get('metavar') or attrs.get('dest', 'VALUE').upper()}"


def _default(option) -> str:
    attrs = option.attrs()
    if attrs.get("action") in ("store_true", "store_false") or attrs.get("default") is None:
        return ""
    return code(attrs["default"])


def page() -> str:
    from matchlab import pytest_plugin

    lines = header("Options", """
The harness is a pytest plugin, installed with the package: these options work with any pytest
command in the repository, in either form (`--reports-dir DIR` or `--reports-dir=DIR`). Bad
combinations stop the run before anything starts, with one line saying what is wrong.
""")
    for title, options in registered_options():
        lines += [f"## {title[0].upper()}{title[1:]}", ""]
        lines += table(["option", "default", "what it does"],
                       [[code(_invocation(o)), _default(o), cell(o.attrs().get("help", ""))] for o in options])
    lines += ["## Markers", "", cell(
        "Select experiments with `-m`. A plain `pytest` runs the unit, integration and smoke tests; the suites "
        f"marked {', '.join(f'`{m}`' for m in pytest_plugin.ON_REQUEST)} run only when `-m` names them."), ""]
    lines += table(["marker", "what it selects", "runs by default"],
                   [[code(name), cell(text), "no" if name in pytest_plugin.ON_REQUEST else "yes"]
                    for name, text in pytest_plugin.MARKERS.items()])
    lines += [cell(f"Every test has a {pytest_plugin.TEST_TIMEOUT_S} s timeout unless `--timeout` or "
                   "`PYTEST_TIMEOUT` says otherwise."), ""]
    return document(lines)
