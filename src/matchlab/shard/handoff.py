"""The two numbers a shard and its relay tell each other, through files beside the journal.

``<name>.durable`` (shard -> relay): the number of the first record that is
not yet durable, in a small file both processes map into memory. The shard
stores it after every group commit (a store into shared memory, no system
call on the commit path); the relay publishes only the records below it, so
it never sends an event whose record a failed write may still cut back or a
crash of the machine may lose. The file is created once and never replaced:
a restarted shard maps the same one, and a relay's mapping stays valid.

``<name>.relay-mark`` (relay -> shard): the relay's delivery mark, every
record below it has had its event confirmed by the broker. Written to a new
file, fsynced and renamed into place, so it is never torn. The shard reads
it when it writes a snapshot and records it there as the snapshot's
delivery mark; compaction keeps every segment from the oldest kept
snapshot's mark on (``journal.compact``), so the journal is compacted only
behind the relay.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

from matchlab.shard.journal import JournalLayout, fsync_directory

DURABLE_SUFFIX = ".durable"
RELAY_MARK_SUFFIX = ".relay-mark"
RELAY_MARK_NEW = ".new"  # not the journal's .tmp: a starting shard removes those, maybe mid-write
# Two copies of one native 8-byte number (one store each). The writer stores the first copy, then the
# second; a reader takes the second, then the first, and trusts them only when they agree, so a read
# that overlaps a store is retried rather than torn.
_SLOT = struct.Struct("@Q")
_DURABLE_BYTES = 2 * _SLOT.size
_MARK_MAGIC = b"MLRMARK1"
_MARK = struct.Struct("<Q")


def durable_path(layout: JournalLayout) -> Path:
    return layout.directory / f"{layout.name}{DURABLE_SUFFIX}"


def relay_mark_path(layout: JournalLayout) -> Path:
    return layout.directory / f"{layout.name}{RELAY_MARK_SUFFIX}"


class DurableIndexWriter:
    """The shard's side: ``store(n)`` after every commit (from whichever thread ran it)."""

    def __init__(self, layout: JournalLayout) -> None:
        path = durable_path(layout)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size < _DURABLE_BYTES:
                os.ftruncate(fd, _DURABLE_BYTES)
            self._map = mmap.mmap(fd, _DURABLE_BYTES)
        finally:
            os.close(fd)

    def store(self, index: int) -> None:
        _SLOT.pack_into(self._map, 0, index)
        _SLOT.pack_into(self._map, _SLOT.size, index)

    def close(self) -> None:
        self._map.close()


class DurableIndexReader:
    """The relay's side: ``read()`` is None until the shard has created the file (or while a store is under way)."""

    def __init__(self, layout: JournalLayout) -> None:
        self.path = durable_path(layout)
        self._map: mmap.mmap | None = None
        self._inode = 0

    def available(self) -> bool:
        """The shard has created the file (whatever a read at this instant would say)."""
        return self._map is not None or self._open()

    def read(self) -> int | None:
        if self._map is None and not self._open():
            return None
        second = _SLOT.unpack_from(self._map, _SLOT.size)[0]
        first = _SLOT.unpack_from(self._map, 0)[0]
        return first if first == second else None

    def replaced(self) -> bool:
        """The file was removed or replaced (a wiped journal folder): map it again at the next read."""
        try:
            inode = os.stat(self.path).st_ino
        except FileNotFoundError:
            inode = 0
        if self._map is not None and inode != self._inode:
            self.close()
            return True
        return False

    def _open(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            stat = os.fstat(fd)
            if stat.st_size < _DURABLE_BYTES:
                return False  # created, not yet sized by the shard
            self._map = mmap.mmap(fd, _DURABLE_BYTES, prot=mmap.PROT_READ)
            self._inode = stat.st_ino
        finally:
            os.close(fd)
        return True

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None


def write_relay_mark(layout: JournalLayout, index: int) -> None:
    """Durably replace the relay's delivery mark (new file, fsync, rename, fsync of the folder)."""
    final = relay_mark_path(layout)
    new = final.with_name(final.name + RELAY_MARK_NEW)
    with open(new, "wb") as f:
        f.write(_MARK_MAGIC + _MARK.pack(index))
        f.flush()
        os.fsync(f.fileno())
    os.replace(new, final)
    fsync_directory(layout.directory)


def read_relay_mark(layout: JournalLayout) -> int | None:
    """The relay's delivery mark, or None if no relay has written one (or it cannot be read)."""
    try:
        data = relay_mark_path(layout).read_bytes()
    except OSError:
        return None
    if len(data) != len(_MARK_MAGIC) + _MARK.size or not data.startswith(_MARK_MAGIC):
        return None
    return _MARK.unpack_from(data, len(_MARK_MAGIC))[0]
