"""Which images the project builds, from which Dockerfile target and which files of the tree.

An image's tag carries the project's version and a hash of exactly what goes into it (the files the
Dockerfile copies for that target, the build's CA bundle and the base image's id), so an unchanged tree
maps to a tag that already exists and nothing is rebuilt. The version tag (``matchlab/me-shard:0.1.0``)
is what the committed manifests and a hand-run ``docker build`` use; every build moves it too.
"""

from __future__ import annotations

from dataclasses import dataclass

VERSION = "0.1.0"  # fixed tags, never :latest
OFFICIAL_BASE = "python:3.11-slim-bookworm"
CONTENT_LABEL = "matchlab.content"  # the content hash, on every image built here
HASH_CHARS = 12

# What a build of each target needs: the classic builder builds every stage up to the target, in the
# Dockerfile's order (os, broker, prometheus, runtime, app), so each target takes the inputs of the
# stages before it too. Paths are from the repository root.
BROKER_INPUTS = ("Dockerfile", "docker/requirements-broker.txt")
PROMETHEUS_INPUTS = (*BROKER_INPUTS, "prometheus/recording-rules.yaml")
APP_INPUTS = (*PROMETHEUS_INPUTS, "docker/requirements-runtime.txt", "pyproject.toml", "src/matchlab")

@dataclass(frozen=True)
class ImageTarget:
    """One image: its Dockerfile target, its repository name and the tree paths it is built from."""

    target: str
    repository: str
    inputs: tuple[str, ...]

    @property
    def version_tag(self) -> str:
        return f"{self.repository}:{VERSION}"

    def content_tag(self, digest: str) -> str:
        return f"{self.repository}:{VERSION}-{digest[:HASH_CHARS]}"


# In the Dockerfile's stage order: a build also builds (or finds cached) the stages of the targets before it.
TARGETS: dict[str, ImageTarget] = {t.target: t for t in (
    ImageTarget("broker", "matchlab/broker", BROKER_INPUTS),
    ImageTarget("prometheus", "matchlab/prometheus", PROMETHEUS_INPUTS),
    ImageTarget("shard", "matchlab/me-shard", APP_INPUTS),
    ImageTarget("gateway", "matchlab/edge-gateway", APP_INPUTS),
    ImageTarget("loadgen", "matchlab/loadgen", APP_INPUTS),
)}
SHARD_IMAGE = TARGETS["shard"].version_tag
GATEWAY_IMAGE = TARGETS["gateway"].version_tag
LOADGEN_IMAGE = TARGETS["loadgen"].version_tag
