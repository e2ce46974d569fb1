"""Where the journal lives on disk: segments and snapshots under one name.

``WAL_PATH`` names either a directory (the journal is ``wal.log`` inside it)
or a file (its directory holds the rest). Every file of one journal starts
with that name:

    wal.log                      segment holding records 0, 1, ...
    wal.log.000000250113         segment whose first record is 250,113
    wal.log.snap.000000250000    snapshot: the state after records 0..249,999

Records are numbered from the journal's beginning, across segments, so a
segment's name says where it starts and a snapshot's where replay resumes.
A snapshot is written to ``<name>.tmp``, fsynced, then renamed, so a crash
mid-snapshot leaves at most a temp file, removed at the next start. Its
header holds a checksum of the payload, the payload's length, the cut and the
delivery mark (the lowest record whose event may not have been delivered);
what the payload holds is ``snapshots``' business.
"""

from __future__ import annotations

import itertools
import logging
import os
import struct
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from matchlab.errors import ConfigError

log = logging.getLogger(__name__)

DIRECTORY_JOURNAL_NAME = "wal.log"
INDEX_DIGITS = 12
SNAPSHOT_INFIX = ".snap."
TEMP_SUFFIX = ".tmp"
# The magic says the payload's version: 1 (one msgpack value) is only read, from older journals.
SNAPSHOT_MAGICS = {b"MLSNAP1\n": 1, b"MLSNAP2\n": 2}
SNAPSHOT_MAGIC = b"MLSNAP2\n"
SNAPSHOT_HEADER = struct.Struct("<IQQQ")  # crc32 of the payload, payload length, cut, delivery mark


class JournalPathError(ConfigError):
    """WAL_PATH cannot hold the journal (no permission, a file where a directory is needed...)."""


class JournalCorruptError(ConfigError):
    """The journal on disk cannot be replayed (a gap no snapshot covers)."""


@dataclass(frozen=True)
class JournalLayout:
    directory: Path
    name: str

    def segment_path(self, first_index: int) -> Path:
        # Segment 0 keeps the bare name, so a file WAL_PATH is that file itself.
        return self.directory / (self.name if first_index == 0 else f"{self.name}.{first_index:0{INDEX_DIGITS}d}")

    def snapshot_path(self, cut: int) -> Path:
        return self.directory / f"{self.name}{SNAPSHOT_INFIX}{cut:0{INDEX_DIGITS}d}"

    def segments(self) -> list[tuple[int, Path]]:
        """(first record index, path) of every segment, oldest first."""
        found = [(0, self.segment_path(0))] if self.segment_path(0).is_file() else []
        found += self._numbered(f"{self.name}.")
        return sorted(found)

    def snapshots(self) -> list[tuple[int, Path]]:
        """(cut, path) of every snapshot, oldest first."""
        return sorted(self._numbered(f"{self.name}{SNAPSHOT_INFIX}"))

    def _numbered(self, prefix: str) -> list[tuple[int, Path]]:
        out = []
        for path in self.directory.iterdir():
            tail = path.name[len(prefix):] if path.name.startswith(prefix) else ""
            if len(tail) == INDEX_DIGITS and tail.isdigit():
                out.append((int(tail), path))
        return out

    def remove_temp_files(self) -> None:
        for path in self.directory.glob(f"{self.name}*{TEMP_SUFFIX}"):
            log.warning("journal: removing %s left by an interrupted snapshot", path)
            path.unlink(missing_ok=True)

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for _, p in self.segments() + self.snapshots())


def resolve_journal(path: Path) -> JournalLayout:
    """Decide directory or file from ``path``, create what is missing, check it is writable.

    An existing directory, a path ending in a separator or a missing path
    without a suffix is a directory; anything else is the first segment's file.
    """
    raw = str(path)
    is_dir = path.is_dir() or raw.endswith(os.sep) or (not path.exists() and not path.suffix)
    directory, name = (path, DIRECTORY_JOURNAL_NAME) if is_dir else (path.parent, path.name)
    if not is_dir and path.exists() and not path.is_file():
        raise JournalPathError(f"WAL_PATH {raw}: exists and is not a regular file")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise JournalPathError(f"WAL_PATH {raw}: cannot use {directory} for the journal: {exc.strerror or exc}") from None
    return JournalLayout(directory, name)


def fsync_directory(directory: Path) -> None:
    """Make a create, rename or unlink in ``directory`` survive a crash."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_snapshot(layout: JournalLayout, cut: int, mark: int, parts: Sequence[bytes | memoryview]) -> Path:
    """Checksummed, written to a temp file, fsynced, renamed into place; the payload is ``parts`` end to end.

    Runs off the event loop: the checksum and the writes of large parts release the GIL.
    """
    crc, length = 0, 0
    for part in parts:
        crc = zlib.crc32(part, crc)
        length += len(part)
    final = layout.snapshot_path(cut)
    temp = final.with_name(final.name + TEMP_SUFFIX)
    try:
        with open(temp, "wb") as f:
            f.write(SNAPSHOT_MAGIC + SNAPSHOT_HEADER.pack(crc, length, cut, mark))
            for part in parts:
                f.write(part)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, final)
    except OSError:
        temp.unlink(missing_ok=True)
        raise
    fsync_directory(layout.directory)
    return final


_HEAD = len(SNAPSHOT_MAGIC) + SNAPSHOT_HEADER.size


class SnapshotFile(NamedTuple):
    version: int
    cut: int
    mark: int
    payload: memoryview


def _header(head: bytes) -> tuple[int, int, int, int, int] | None:
    """(version, crc, length, cut, mark) of a snapshot's first bytes, or None if they are not a header."""
    version = SNAPSHOT_MAGICS.get(head[:len(SNAPSHOT_MAGIC)])
    if len(head) < _HEAD or version is None:
        return None
    return version, *SNAPSHOT_HEADER.unpack_from(head, len(SNAPSHOT_MAGIC))


def snapshot_floor(path: Path) -> int | None:
    """The lowest record a restart from this snapshot reads: min(cut, delivery mark); None if unreadable."""
    try:
        with open(path, "rb") as f:
            head = _header(f.read(_HEAD))
    except OSError:
        return None
    return None if head is None else min(head[3], head[4])


def read_snapshot(path: Path) -> SnapshotFile | None:
    """The snapshot's header fields and payload, or None if it is torn or corrupt."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        log.error("snapshot %s unreadable: %s", path, exc)
        return None
    head = _header(data)
    if head is None:
        return None
    version, crc, length, cut, mark = head
    payload = memoryview(data)[_HEAD:]
    if len(payload) != length or zlib.crc32(payload) != crc:
        return None
    return SnapshotFile(version, cut, mark, payload)


def compact(layout: JournalLayout, keep_snapshots: int) -> int:
    """Delete snapshots beyond the newest ``keep_snapshots`` and segments wholly behind the oldest kept one.

    Segments are only dropped once ``keep_snapshots`` exist, so a corrupt
    newest snapshot can always fall back to the previous one and replay on
    from there; the oldest kept snapshot's delivery mark keeps every segment
    with events not yet confirmed delivered. Returns the bytes freed.
    """
    freed = 0
    snapshots = layout.snapshots()
    for _cut, path in snapshots[:-keep_snapshots]:
        freed += path.stat().st_size
        path.unlink()
    kept = snapshots[-keep_snapshots:]
    floor = snapshot_floor(kept[0][1]) if len(kept) == keep_snapshots else None
    if floor is None:
        return freed
    segments = layout.segments()
    for (_first, path), (next_first, _) in itertools.pairwise(segments):
        if next_first <= floor:  # every record of this segment lies below the floor
            freed += path.stat().st_size
            path.unlink()
    fsync_directory(layout.directory)
    return freed
