"""The harness' command-line options in pytest: the rows of ``matchlab.settings.OPTIONS`` that apply to
pytest, validated once in pytest_configure (a combination that does not fit: UsageError)."""

from __future__ import annotations

import pytest

from matchlab.settings import (  # noqa: F401 - the harness' names for them
    BACKENDS,
    PYTEST,
    HarnessOptions,
    Profile,
    add_options,
    backend_options_problem,
    gateway_workers_problem,
    load_options_problem,
    max_shards_problem,
    settings_from,
    settings_problem,
)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser.getgroup("matchlab", "matching-engine experiment harness").addoption, PYTEST)


def pytest_configure(config: pytest.Config) -> None:
    opts = settings_from(lambda option: config.getoption(option.flag), PYTEST)
    problem = settings_problem(opts)
    if problem:
        raise pytest.UsageError(problem)
    if opts.compare_to is not None:
        from matchlab.compare.runs import load_results
        from matchlab.errors import ConfigError

        try:  # refuse a baseline that cannot be compared before the run, not after it
            load_results(opts.compare_to)
        except ConfigError as exc:
            raise pytest.UsageError(f"--compare-to: {exc}") from None
    config.stash[OPTIONS_KEY] = opts


def check_max_shards(max_shards: int, backend: str) -> None:
    problem = max_shards_problem(max_shards, backend)
    if problem:
        raise pytest.UsageError(problem)


OPTIONS_KEY = pytest.StashKey[HarnessOptions]()


def harness_options(config: pytest.Config) -> HarnessOptions:
    return config.stash[OPTIONS_KEY]
