"""Snapshots: a shard's state at a cut between two journal records, taken without stopping the matcher.

A snapshot lets a restart skip the journal below its cut (restart stays
within seconds after millions of orders) and lets compaction drop those
segments. The payload (version 2)::

    u32 length of the head | head: msgpack (match count, books, the id window's head) | id window chunks

Taking one holds the event loop only for what must be consistent with the
cut: the books, encoded there (~0.4 ms at 8,000 resting orders), and the id
window's chunks, which the window sealed as it grew (``idwindow``), so only
its newest few hundred ids are encoded now. Everything else runs in a
thread once every record below the cut is durable: the checksum, the write,
the fsync, the rename and the compaction.

Two are kept, so a torn or corrupt newest snapshot falls back to the
previous one (and replay from there); version-1 snapshots of older journals
(one msgpack value) are still read.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from time import perf_counter

import msgspec

from matchlab.shard.engine import MatchingEngine
from matchlab.shard.idwindow import IdWindow, WindowHead
from matchlab.shard.journal import JournalLayout, SnapshotFile, compact, write_snapshot
from matchlab.shard.wal import GroupCommitLog

log = logging.getLogger(__name__)

SNAPSHOT_VERSION = 2
# Two, so that a corrupt newest snapshot falls back to the previous one.
SNAPSHOTS_KEPT = 2
_HEAD_LENGTH = struct.Struct("<I")

Books = dict[str, tuple[list[tuple[int, list[list]]], list[tuple[int, list[list]]]]]


class SnapshotHead(msgspec.Struct, array_like=True):
    match_count: int
    books: Books
    ids: WindowHead


class SnapshotV1(msgspec.Struct, array_like=True):
    """A version-1 snapshot's payload (only read, from older journals)."""

    version: int
    cut: int
    match_count: int
    mark: int
    books: Books
    ids: bytes


_decode_head = msgspec.msgpack.Decoder(SnapshotHead).decode
_decode_v1 = msgspec.msgpack.Decoder(SnapshotV1).decode
_encode = msgspec.msgpack.Encoder().encode


class SnapshotCorrupt(ValueError):
    """The payload's checksum held but it does not decode (a bug or a foreign file): fall back."""


def capture(engine: MatchingEngine, ids: IdWindow, exclude_newest: int) -> list[bytes]:
    """The payload's parts for the state right now, leaving out the newest ids (their orders follow the cut)."""
    window = ids.encode(exclude_newest=exclude_newest)
    head = _encode(SnapshotHead(engine.match_count, engine.export_books(), window.head))
    return [_HEAD_LENGTH.pack(len(head)) + head, *window.chunks]


def restore(snapshot: SnapshotFile, engine: MatchingEngine, ids: IdWindow) -> int:
    """Load a snapshot into ``engine`` and ``ids``; return its match count. Raises SnapshotCorrupt."""
    payload = snapshot.payload
    try:
        if snapshot.version == 1:
            old = _decode_v1(payload)
            if old.version != 1 or old.cut != snapshot.cut:
                raise SnapshotCorrupt(f"version-1 payload says version {old.version}, cut {old.cut}")
            books, match_count = old.books, old.match_count
            ids.restore_whole(old.ids)
        else:
            (length,) = _HEAD_LENGTH.unpack_from(payload)
            start = _HEAD_LENGTH.size + length
            head = _decode_head(payload[_HEAD_LENGTH.size:start])
            chunks = []
            for size in head.ids.chunk_bytes:
                chunks.append(payload[start:start + size])
                start += size
            if start != len(payload):
                raise SnapshotCorrupt(f"chunks end at byte {start}, the payload at {len(payload)}")
            ids.restore(head.ids, chunks)
            books, match_count = head.books, head.match_count
    except (msgspec.DecodeError, struct.error) as exc:
        raise SnapshotCorrupt(str(exc)) from None
    engine.load_books({s: b for s, b in books.items() if s in engine.books})
    engine.match_count = match_count
    return match_count


class Snapshotter:
    """Writes the snapshots the pipeline captures, one at a time, and compacts the journal after each."""

    def __init__(self, layout: JournalLayout, wal: GroupCommitLog, observe_capture: Callable[[float], None]) -> None:
        self.layout = layout
        self.wal = wal
        self.observe_capture = observe_capture
        self.task: asyncio.Task | None = None

    @property
    def busy(self) -> bool:
        return self.task is not None

    def take(self, cut: int, mark: int, engine: MatchingEngine, ids: IdWindow, exclude_newest: int) -> None:
        """Capture the state now (on the loop, between two entries) and write it once the cut is durable.

        ``mark``: the delivery mark the snapshot records, below which no event is owed any more (the
        in-process outbox's, the relay's, or the cut when no events are sent).
        """
        started = perf_counter()
        parts = capture(engine, ids, exclude_newest)
        self.wal.request_rotation()
        self.task = asyncio.get_running_loop().create_task(self._write(cut, mark, parts), name="snapshot")
        self.observe_capture(perf_counter() - started)

    async def _write(self, cut: int, mark: int, parts: list[bytes]) -> None:
        loop = asyncio.get_running_loop()
        try:
            # Every match of an order below the cut, and any delivery mark, must be durable before the snapshot
            # claims them.
            await self.wal.sync()
            started = perf_counter()
            path = await loop.run_in_executor(None, write_snapshot, self.layout, cut, mark, parts)
            freed = await loop.run_in_executor(None, compact, self.layout, SNAPSHOTS_KEPT)
            log.info("snapshot %s written (%d bytes, delivery mark %d, %.3fs); compaction freed %d bytes",
                     path.name, sum(len(p) for p in parts), mark, perf_counter() - started, freed)
        except OSError as exc:  # WalError included: the journal will be retried, the snapshot comes later
            log.error("snapshot at record %d not written: %s", cut, exc)
        finally:
            self.task = None

    async def wait(self) -> None:
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)
