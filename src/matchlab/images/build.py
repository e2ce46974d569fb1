"""Build the project's images on the Docker engine (the Docker SDK), each only when its content changed.

``build_images`` is the one way every caller gets images: ``matchlab images``, the docker backend and the
k3d backend. Per target it assembles the exact build context (``context``), derives the content tag
(``targets``), and builds only when the engine lacks that tag or holds it from another base; the
version tag is moved to the result either way. The base is used as the engine has it, else pulled, else
(the official base only) replaced by a stand-in built from Debian packages (``standin``), which is said
in one line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from matchlab.errors import CommandError, ConfigError, PrerequisiteError
from matchlab.images.context import CA_BUNDLE, ROOT, content_hash, context_files, context_tar
from matchlab.images.standin import STAND_IN_LABEL, build_stand_in
from matchlab.images.targets import CONTENT_LABEL, OFFICIAL_BASE, TARGETS, VERSION

log = logging.getLogger(__name__)

BASE_LABEL = "matchlab.base"  # the id of the base image an image was built on
BUILD_LOG_TAIL = 25


@dataclass(frozen=True)
class BuiltImage:
    target: str
    tag: str  # version and content: what callers run or import
    version_tag: str  # moved to the same image
    built: bool  # False: the engine already had this content on this base
    seconds: float
    size_bytes: int


def planned_tags(targets: Iterable[str], base: str = OFFICIAL_BASE, root: Path = ROOT,
                 ca_bundle: Path | None = CA_BUNDLE) -> dict[str, str]:
    """Target -> the content tag a build would produce, without asking the engine (for plans and tests)."""
    return {t: TARGETS[t].content_tag(content_hash(context_files(TARGETS[t].inputs, root, ca_bundle), base))
            for t in _known(targets)}


def _known(targets: Iterable[str]) -> list[str]:
    targets = list(targets)
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise ConfigError(f"unknown image target(s) {unknown}; known: {list(TARGETS)}")
    return targets


def ensure_base(client, base: str, ca_bundle: Path | None, say: Callable[[str], None]) -> str:
    """The base image's id: as the engine has it, pulled, or (the official base) a stand-in built here."""
    import docker.errors

    try:
        image = client.images.get(base)
    except docker.errors.ImageNotFound:
        try:
            image = client.images.pull(base)
        except docker.errors.APIError as exc:
            if base != OFFICIAL_BASE:
                raise PrerequisiteError(f"the base image {base} is not on this engine and cannot be pulled "
                                        f"({exc.explanation or exc})") from None
            say(f"base {base} cannot be pulled ({(exc.explanation or str(exc)).splitlines()[0][:90]}): building a "
                f"stand-in from Debian packages (debootstrap bookworm with python3.11, the machine's CA bundle)")
            started = time.perf_counter()
            build_stand_in(client, base, ca_bundle)
            image = client.images.get(base)
            say(f"stand-in base {base} built in {time.perf_counter() - started:.0f} s "
                f"({image.attrs.get('Size', 0) / 1e6:.0f} MB)")
            return image.id
    if STAND_IN_LABEL in (image.labels or {}):
        say(f"base {base} is the stand-in built from Debian packages ({image.labels[STAND_IN_LABEL]})")
    return image.id


def _existing(client, tag: str, base_id: str):
    """The image under ``tag`` if it was built on ``base_id``, else None."""
    import docker.errors

    try:
        image = client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None
    return image if (image.labels or {}).get(BASE_LABEL) == base_id else None


def _build(client, target: str, tag: str, files: dict[str, bytes], base: str, base_id: str, digest: str):
    import docker.errors

    labels = {CONTENT_LABEL: digest, BASE_LABEL: base_id, "org.opencontainers.image.version": VERSION}
    try:
        image, _ = client.images.build(fileobj=context_tar(files), custom_context=True, target=target, tag=tag,
                                       buildargs={"BASE": base}, labels=labels, rm=True, forcerm=True)
    except docker.errors.BuildError as exc:
        lines = [str(chunk.get("stream") or chunk.get("error") or "").rstrip() for chunk in exc.build_log]
        tail = "\n".join(line for line in lines if line)
        tail = "\n".join(tail.splitlines()[-BUILD_LOG_TAIL:])
        raise CommandError(f"building image {tag} (Dockerfile target {target}) failed: {exc.msg}\n{tail}") from None
    except docker.errors.APIError as exc:
        raise CommandError(f"building image {tag} (Dockerfile target {target}) failed: {exc}") from None
    return image


def build_images(targets: Iterable[str], client=None, *, base: str = OFFICIAL_BASE, force: bool = False,
                 root: Path = ROOT, ca_bundle: Path | None = CA_BUNDLE,
                 say: Callable[[str], None] = log.info) -> dict[str, BuiltImage]:
    """Target -> the image for it, built only where the engine lacks its content (or ``force``)."""
    targets = _known(targets)
    if client is None:
        from matchlab.images.engine import engine_client

        client = engine_client()
    base_id = ensure_base(client, base, ca_bundle, say)
    built: dict[str, BuiltImage] = {}
    for target in targets:
        spec = TARGETS[target]
        files = context_files(spec.inputs, root, ca_bundle)
        digest = content_hash(files, base)
        tag = spec.content_tag(digest)
        started = time.perf_counter()
        image = None if force else _existing(client, tag, base_id)
        fresh = image is None
        if fresh:
            say(f"building {tag} (target {target})")
            image = _build(client, target, tag, files, base, base_id, digest)
        repository, version = spec.version_tag.rsplit(":", 1)
        image.tag(repository, version)
        built[target] = BuiltImage(target, tag, spec.version_tag, fresh, time.perf_counter() - started,
                                   int(image.attrs.get("Size", 0)))
    return built
