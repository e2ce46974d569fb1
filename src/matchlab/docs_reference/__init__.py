"""The reference pages of the docs site, generated from the code that defines what they describe.

Each page is a function returning Markdown, registered in ``PAGES`` under its
path inside ``docs/``: the pytest options (from the plugin's registered
options), the ``matchlab`` verbs and the ``python -m`` commands (from their
argparse parsers), the services' environment variables (read off their
config classes' ``from_env``), their metrics (from the registries the
services build) and the ASR criteria (from the registry the verdicts use).
``python -m matchlab.docs_reference`` writes them; a unit test fails when a
committed page and the code disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from matchlab.docs_reference import cli_pages, criteria_page, environment_page, metrics_page, options_page

DOCS_DIR = Path(__file__).resolve().parents[3] / "docs"

PAGES: dict[str, Callable[[], str]] = {
    "running/options.md": options_page.page,
    "running/cli.md": cli_pages.matchlab_page,
    "reference/commands.md": cli_pages.commands_page,
    "reference/environment.md": environment_page.page,
    "reference/metrics.md": metrics_page.page,
    "experiments/criteria.md": criteria_page.page,
}


def stale_pages(docs_dir: Path = DOCS_DIR) -> list[str]:
    """The pages whose committed text differs from what the code generates now."""
    stale = []
    for path, build in PAGES.items():
        target = docs_dir / path
        if not target.is_file() or target.read_text() != build():
            stale.append(path)
    return stale


def write_pages(docs_dir: Path = DOCS_DIR) -> list[str]:
    """Write every page; returns the ones that changed."""
    changed = []
    for path, build in PAGES.items():
        target = docs_dir / path
        text = build()
        if not target.is_file() or target.read_text() != text:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            changed.append(path)
    return changed
