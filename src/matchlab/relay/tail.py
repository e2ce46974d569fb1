"""Reading a shard's journal from a given record on, as the shard writes it, one durable record at a time.

The tail keeps an open segment and a byte offset, and reads ahead with
``pread`` in blocks. It hands out only records below the durable index the
shard publishes (``shard.handoff``) and moves its offset past a record only
when it hands it out, so bytes the shard may still cut back (a failed write)
are read again, not trusted. Each record's checksum is checked. At the end
of a segment it moves to the next one once that exists: the shard creates
a segment when it rotates, and the first record in it is the next one.
"""

from __future__ import annotations

import logging
import os
import zlib

from matchlab.errors import MatchlabError
from matchlab.shard.journal import JournalLayout
from matchlab.shard.wal import HEADER, MAX_RECORD_BYTES

log = logging.getLogger(__name__)

READ_BYTES = 256 * 1024


class JournalGapError(MatchlabError):
    """Records the relay still owes are gone from the journal (deleted by hand, or a compaction bug)."""


class JournalTail:
    """Durable records from ``next_index`` on, in order. One reader, never shared."""

    def __init__(self, layout: JournalLayout, next_index: int) -> None:
        self.layout = layout
        self.next_index = next_index
        self._fd: int | None = None
        self._segment_first = -1
        self._offset = 0
        self._bad_at: tuple[int, int] | None = None  # the record whose checksum failed (logged once)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def read(self, durable: int, limit: int) -> list[tuple[int, int, bytes]]:
        """Up to ``limit`` records (index, kind, payload) below ``durable``, from ``next_index`` on."""
        out: list[tuple[int, int, bytes]] = []
        while self.next_index < durable and len(out) < limit:
            if self._fd is None and not self._open_at(self.next_index):
                break
            got = self._read_block(durable, limit - len(out), out)
            if got:
                continue
            if not self._next_segment():
                break
        return out

    def _read_block(self, durable: int, limit: int, out: list) -> int:
        """Parse the complete records of one block at the offset; return how many were handed out."""
        data = os.pread(self._fd, READ_BYTES, self._offset)
        if len(data) >= HEADER.size:
            length = HEADER.unpack_from(data)[0]
            if HEADER.size + length > len(data) and 0 < length <= MAX_RECORD_BYTES:  # one record longer than a block
                data = os.pread(self._fd, HEADER.size + length, self._offset)
        view, at, taken = memoryview(data), 0, 0
        unpack, size = HEADER.unpack_from, len(data)
        while taken < limit and self.next_index < durable and at + HEADER.size <= size:
            length, crc = unpack(data, at)
            start, end = at + HEADER.size, at + HEADER.size + length
            if length == 0 or length > MAX_RECORD_BYTES or end > size:
                break
            if zlib.crc32(view[start:end]) != crc:
                # Below the durable index this is no torn tail: something rewrote the journal. Stop here rather
                # than send what may not be the shard's record.
                if self._bad_at != (self._segment_first, self._offset + at):
                    self._bad_at = (self._segment_first, self._offset + at)
                    log.error("journal %s: record %d at byte %d fails its checksum; waiting", self._path(),
                              self.next_index, self._offset + at)
                break
            out.append((self.next_index, data[start], data[start + 1:end]))
            self.next_index += 1
            at, taken = end, taken + 1
        self._offset += at
        return taken

    def _path(self):
        return self.layout.segment_path(self._segment_first)

    def _next_segment(self) -> bool:
        """At the end of the open segment: move to the one that starts at ``next_index``, if it exists yet."""
        if self.next_index == self._segment_first:
            return False  # nothing read from this one yet: the next record is simply not written
        path = self.layout.segment_path(self.next_index)
        if not path.exists():
            return False
        self.close()
        return self._open_at(self.next_index)

    def _open_at(self, index: int) -> bool:
        """Open the segment holding record ``index`` and step to it by the records' lengths."""
        segments = self.layout.segments()
        holding = [(first, path) for first, path in segments if first <= index]
        if not holding:
            if segments and segments[0][0] > index:
                raise JournalGapError(
                    f"journal {self.layout.directory}: the relay needs record {index} but the oldest segment starts "
                    f"at {segments[0][0]} ({segments[0][1].name}): those events were never published")
            return False  # the shard has not created the journal yet
        first, path = holding[-1]
        fd = os.open(path, os.O_RDONLY)
        offset, skip = 0, index - first
        while skip:  # by the length fields alone, a block at a time (records below the mark were all written)
            block = os.pread(fd, READ_BYTES, offset)
            at = 0
            while skip and at + HEADER.size <= len(block):
                at += HEADER.size + HEADER.unpack_from(block, at)[0]
                skip -= 1
            if not at:
                os.close(fd)
                return False  # not written that far yet
            offset += at
        self._fd, self._segment_first, self._offset = fd, first, offset
        return True
