"""Where the pinned Helm charts come from: MATCHLAB_CHARTS_DIR when set, else the public repositories, once."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from matchlab.errors import PrerequisiteError
from matchlab.k8s import render
from matchlab.k8s.helm_values import PROMETHEUS_CHART


def fake_helm(tmp_path: Path, *, fail: str | None = None) -> str:
    """A helm stand-in that answers `helm pull CHART --repo URL --version V --destination DIR` and logs its argv."""
    script = tmp_path / "helm"
    body = (f'echo "{fail}" >&2; exit 1' if fail else
            'while [ $# -gt 0 ]; do case "$1" in --version) v=$2; shift;; --destination) d=$2; shift;; '
            'pull) c=$2;; esac; shift; done; echo archive > "$d/$c-$v.tgz"')
    script.write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path}/calls"\n{body}\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_a_charts_folder_is_used_as_it_is(tmp_path):
    (tmp_path / "prometheus-25.27.0.tgz").write_text("archive")
    env = {render.CHARTS_DIR_ENV: str(tmp_path)}
    assert render.chart_archive("prometheus", env=env) == tmp_path / "prometheus-25.27.0.tgz"


def test_a_charts_folder_without_the_archive_names_the_setting_and_the_file(tmp_path):
    with pytest.raises(PrerequisiteError) as err:
        render.chart_archive("grafana", env={render.CHARTS_DIR_ENV: str(tmp_path)})
    assert render.CHARTS_DIR_ENV in str(err.value) and "grafana-11.6.1.tgz" in str(err.value)


def test_without_the_setting_the_pinned_version_is_fetched_from_its_repository_once(tmp_path):
    helm = fake_helm(tmp_path)
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    first = render.chart_archive("prometheus", helm, env)
    again = render.chart_archive("prometheus", helm, env)
    _, url, chart, version = PROMETHEUS_CHART
    assert first == again == tmp_path / "cache" / "matchlab" / "charts" / f"{chart}-{version}.tgz"
    assert first.read_text() == "archive\n"
    calls = (tmp_path / "calls").read_text().splitlines()
    assert len(calls) == 1 and calls[0].startswith(f"pull {chart} --repo {url} --version {version} --destination ")
    assert os.listdir(first.parent) == [first.name]  # no temporary folder left behind


def test_a_failed_fetch_is_one_line_saying_how_to_work_offline(tmp_path):
    helm = fake_helm(tmp_path, fail="Error: looks like the repository is not reachable")
    with pytest.raises(PrerequisiteError) as err:
        render.chart_archive("prometheus", helm, {"XDG_CACHE_HOME": str(tmp_path / "cache")})
    text = str(err.value)
    assert "\n" not in text and "not reachable" in text and render.CHARTS_DIR_ENV in text
    assert not list((tmp_path / "cache" / "matchlab" / "charts").iterdir())
