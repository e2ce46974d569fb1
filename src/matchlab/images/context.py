"""The build context sent to the engine: exactly the files an image's Dockerfile stage copies, and its hash.

The context is assembled here rather than taken from the working tree, so that what is hashed is what
is built: a change to the README, a test or a report never changes an image's tag, and the upload stays
small. The machine's CA bundle travels along as ``docker/build-ca.crt`` (where the machine has one):
package downloads inside a build then trust the same authorities as the host, a TLS-intercepting
proxy's included. The archive is deterministic (sorted, no times, no owners), so equal trees hash equal.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CA_IN_CONTEXT = "docker/build-ca.crt"
SKIPPED_PARTS = {"__pycache__"}
SKIPPED_SUFFIXES = {".pyc", ".pyo"}


def _files_under(root: Path, rel: str) -> Iterable[str]:
    path = root / rel
    if path.is_file():
        yield rel
        return
    if not path.is_dir():
        raise FileNotFoundError(f"image input {rel} is missing under {root}")
    for found in sorted(path.rglob("*")):
        if found.is_file() and not SKIPPED_PARTS & set(found.parts) and found.suffix not in SKIPPED_SUFFIXES:
            yield found.relative_to(root).as_posix()


def context_files(inputs: Iterable[str], root: Path = ROOT, ca_bundle: Path | None = CA_BUNDLE) -> dict[str, bytes]:
    """Archive path -> content for one image: its inputs, plus the CA bundle when there is one."""
    files = {rel: (root / rel).read_bytes() for item in inputs for rel in _files_under(root, item)}
    if ca_bundle is not None and ca_bundle.is_file():
        files[CA_IN_CONTEXT] = ca_bundle.read_bytes()
    return files


def content_hash(files: dict[str, bytes], *extra: str) -> str:
    """A hex digest over every path and content (and ``extra``, e.g. the base image's id)."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    for item in extra:
        digest.update(b"\1" + item.encode())
    return digest.hexdigest()


def context_tar(files: dict[str, bytes]) -> io.BytesIO:
    """The files as an uncompressed tar the engine takes as a build context."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(files[name]), 0o644, 0
            tar.addfile(info, io.BytesIO(files[name]))
    buffer.seek(0)
    return buffer
