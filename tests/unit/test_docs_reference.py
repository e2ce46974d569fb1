"""The generated reference pages of the docs site agree with the code, and cover all of it."""

from __future__ import annotations

import argparse

import pytest

from matchlab import docs_reference
from matchlab.docs_reference import cli_pages, environment_page, markdown, options_page

REGENERATE = "python -m matchlab.docs_reference"


def committed(path: str) -> str:
    return (docs_reference.DOCS_DIR / path).read_text()


def test_the_committed_pages_are_what_the_code_generates():
    stale = docs_reference.stale_pages()
    assert not stale, f"docs pages differ from the code: {', '.join(stale)}; run `{REGENERATE}` and commit them"


def test_every_pytest_option_of_the_plugin_is_in_the_options_page():
    options = [name for _, group in options_page.registered_options() for o in group for name in o.names()]
    assert "--backend" in options and "--profile" in options  # the plugin's options were found at all
    page = committed("running/options.md")
    assert not [name for name in options if f"`{name}" not in page]


def test_every_matchlab_verb_and_its_arguments_are_in_the_cli_page():
    from matchlab.cli.main import build_parser

    page = committed("running/cli.md")
    verbs = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"up", "down", "status", "order", "book", "report"} <= set(verbs)
    for name, sub in verbs.items():
        assert f"## matchlab {name}\n" in page
        for action in sub._actions:
            if action.option_strings and action.help != argparse.SUPPRESS and action.dest != "help":
                assert f"`{cli_pages.invocation(action)}`" in page, f"matchlab {name}: {action.option_strings}"


def test_the_environment_is_read_off_from_env_with_its_defaults():
    from matchlab.gateway.config import DEFAULT_SHED_QUEUE_WAIT_MS, GatewayConfig
    from matchlab.shard.config import DEFAULT_WAL_SIZE_MB, ShardConfig

    shard = environment_page.read_by(ShardConfig.from_env)
    gateway = environment_page.read_by(GatewayConfig.from_env)
    assert shard["WAL_SIZE_MB"] == DEFAULT_WAL_SIZE_MB and shard["WAL_FSYNC"] is True
    assert shard["KAFKA_BOOTSTRAP"] == "localhost:9092" and shard["ADMIN_TOKEN"] == ""
    assert gateway["SHED_QUEUE_WAIT_MS"] == DEFAULT_SHED_QUEUE_WAIT_MS and "HEADER_TIMEOUT_S" in gateway
    page = committed("reference/environment.md")
    assert not [name for name in {**shard, **gateway} if f"| `{name}` |" not in page]


def test_a_variable_without_a_meaning_stops_the_generator_naming_it(monkeypatch):
    monkeypatch.delitem(environment_page.MEANINGS, "WAL_SIZE_MB")
    with pytest.raises(LookupError, match="WAL_SIZE_MB"):
        environment_page.page()


def test_every_metric_of_both_services_is_in_the_metrics_page():
    from matchlab.docs_reference import metrics_page

    page = committed("reference/metrics.md")
    names = [metrics_page._exposed_name(f) for _, registry in metrics_page._registries() for f in registry.collect()]
    assert "me_match_duration_seconds" in names and "gw_requests_total" in names
    assert not [name for name in names if f"`{name}`" not in page]


def test_a_changed_help_text_makes_the_page_stale(tmp_path, monkeypatch):
    docs_reference.write_pages(tmp_path)
    assert docs_reference.stale_pages(tmp_path) == []
    original = options_page.registered_options

    def reworded():
        groups = original()
        groups[0][1][0]._attrs["help"] = "a reworded help text"
        return groups

    monkeypatch.setattr(options_page, "registered_options", reworded)
    assert docs_reference.stale_pages(tmp_path) == ["running/options.md"]


def test_cell_text_is_escaped_outside_code_and_option_names_become_code():
    assert markdown.cell("a|b `x|y` *c* <d> --reports-dir DIR") == (
        "a\\|b `x\\|y` \\*c\\* &lt;d&gt; `--reports-dir` DIR")
