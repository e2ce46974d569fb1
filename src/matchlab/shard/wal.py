"""Write-ahead log: length-prefixed, checksummed records with group commit.

Record layout (little-endian)::

    u32 length of (kind + payload) | u32 crc32 of (kind + payload) | u8 kind | payload

The event loop appends records to an open batch (a bytearray: no syscall on
the request path). One committer thread takes the whole batch, writes it and
fsyncs once (group commit), then hands the batch back to the loop, which
resolves the batch's future and receives the batch's attachments in append
order. Nothing is acknowledged before the fsync covering it has returned.

Where the disk's fsync is fast (under ``inline_max_s``, measured as it goes)
and no batch is with the committer, the loop writes and fsyncs the batch
itself, one loop iteration after it became urgent: the hand-off to the
thread and back (futex wake-ups, the GIL changing hands, the loop's
self-pipe) cost more CPU than such an fsync blocks the loop. A slow disk
moves commits back to the thread, where the loop keeps serving meanwhile.

A record appended ``lazy`` (a match, a delivery mark: nobody waits on it)
does not wake the committer: it rides with the next urgent record's fsync,
or is committed ``lazy_delay_s`` after it was appended if none comes. At
moderate rates that halves the write/fsync/hand-back cycles per order, for
a few milliseconds' delay of the events behind those records.

On open, the log is scanned; the first record whose header or checksum does
not hold (a torn write from a crash) and everything after it is truncated.

A write or fsync that fails or falls short (a full disk) fails its whole
batch and every batch after it: the committer cuts the segment back to its
last durable byte, so no partial record stays on disk behind the next one,
and appends are refused until the owner calls ``reset()``. Segments rotate
when one reaches its size bound or on request (before a snapshot).
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from matchlab.shard.journal import JournalLayout, fsync_directory

log = logging.getLogger(__name__)

HEADER = struct.Struct("<II")
# A record longer than this is treated as corruption, not allocated.
MAX_RECORD_BYTES = 64 * 1024 * 1024


class WalError(OSError):
    """The journal could not be written or synced; nothing in the batch is durable."""


class JournalUnavailable(WalError):
    """Refused without trying: an earlier batch failed and the journal has not been reset."""


def encode_record(kind: int, payload: bytes) -> bytes:
    body = bytes((kind,)) + payload
    return HEADER.pack(len(body), zlib.crc32(body)) + body


def scan(path: Path, skip: int = 0) -> tuple[list[tuple[int, bytes]], int, int]:
    """Read every intact record; return (records, valid_end_offset, file_size).

    The first ``skip`` records are stepped over by their length fields alone,
    unchecked and not returned: a snapshot already covers them, and the only
    torn record a crash leaves is the last one.
    """
    data = path.read_bytes() if path.exists() else b""
    view = memoryview(data)
    records: list[tuple[int, bytes]] = []
    offset, size = 0, len(data)
    unpack = HEADER.unpack_from
    while skip and offset + HEADER.size <= size:
        length = unpack(data, offset)[0]
        if length == 0 or length > MAX_RECORD_BYTES or offset + HEADER.size + length > size:
            break
        offset += HEADER.size + length
        skip -= 1
    while offset + HEADER.size <= size:
        length, crc = unpack(data, offset)
        start, end = offset + HEADER.size, offset + HEADER.size + length
        if length == 0 or length > MAX_RECORD_BYTES or end > size:
            break
        if zlib.crc32(view[start:end]) != crc:
            break
        records.append((data[start], data[start + 1:end]))
        offset = end
    return records, offset, size


def recover(path: Path, skip: int = 0) -> list[tuple[int, bytes]]:
    """Scan the log, truncate a torn tail in place, return the intact records after the first ``skip``."""
    records, valid_end, size = scan(path, skip)
    if valid_end < size:
        log.warning(
            "journal %s: torn or corrupt record at byte %d; truncating %d trailing bytes",
            path, valid_end, size - valid_end,
        )
        with open(path, "r+b") as f:
            f.truncate(valid_end)
            os.fsync(f.fileno())
    return records


# How long a lazy record may wait for an urgent one to share its fsync.
LAZY_DELAY_S = 0.005
# The loop commits a batch itself while write + fsync take at most this long (on average).
INLINE_MAX_S = 0.001
# Weight of the latest commit in that average.
COMMIT_TIME_WEIGHT = 0.3


class _Batch:
    __slots__ = ("attachments", "buf", "count", "fsync_s", "future", "inline", "lazy_timer", "sync_s", "urgent",
                 "write_s")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.count = 0
        self.attachments: list[Any] = []
        self.future: asyncio.Future | None = None
        self.urgent = False  # the committer takes a batch only once something in it is urgent
        self.inline = False  # urgent, and the loop commits it itself: the thread leaves it alone
        self.lazy_timer: asyncio.TimerHandle | None = None  # loop side only
        self.sync_s = 0.0  # its write + fsync, set by whoever committed it
        self.write_s = 0.0  # of which the write
        self.fsync_s = 0.0  # and the fsync


class GroupCommitLog:
    """The append side of the journal; one instance owns the active segment while open.

    ``next_index`` is the number of the next record that will become durable
    (records are numbered across segments); the committer thread owns it while
    batches are outstanding.
    """

    def __init__(
        self,
        layout: JournalLayout,
        segment_first: int,
        next_index: int,
        loop: asyncio.AbstractEventLoop,
        on_durable: Callable[[list[Any], float], None],
        on_failed: Callable[[list[Any], WalError], None] | None = None,
        fsync: bool = True,
        segment_bytes: int = 64 * 1024 * 1024,
        lazy_delay_s: float = LAZY_DELAY_S,
        inline_max_s: float = INLINE_MAX_S,
        on_synced: Callable[[_Batch, float], None] | None = None,
        on_durable_index: Callable[[int], None] | None = None,
    ) -> None:
        self.layout = layout
        self._lazy_delay_s = lazy_delay_s
        self._inline_max_s = inline_max_s
        self.commit_s = 0.0  # moving average of one batch's write + fsync
        self._with_thread = 0  # batches handed to the committer thread and not yet completed (loop side)
        self.inline_commits = 0
        self.thread_commits = 0
        self._loop = loop
        self._on_durable = on_durable
        self._on_failed = on_failed
        # Each durable batch (its write_s, fsync_s, sync_s) and its hand-back wait (committer thread done ->
        # the loop took the batch; 0 for inline commits), on the loop.
        self._on_synced = on_synced
        self._fsync = fsync
        self._segment_bytes = segment_bytes
        self.segment_first = segment_first
        self.next_index = next_index
        self._fd = self._open_segment(segment_first)
        self._size = os.fstat(self._fd).st_size  # last durable byte of the active segment
        if self._size and fsync:  # what a crash left in the page cache: durable from here on, as replay assumed
            os.fsync(self._fd)
        # Told ``next_index`` after every durable batch, from the thread that committed it (the relay's
        # durable index, ``handoff``): at once here, for what replay found.
        self._on_durable_index = on_durable_index
        if on_durable_index is not None:
            on_durable_index(next_index)
        self._cut_back = False  # the segment may hold bytes past _size: cut before writing
        self._rotate_requested = False
        self._cond = threading.Condition(threading.Lock())  # not re-entered: a plain lock is cheaper
        self._open = _Batch()
        self._closing = False
        self._broken: WalError | None = None  # committer side: refuse batches until reset
        self.failed: WalError | None = None  # loop side: refuse appends until reset
        self.pending_records = 0  # appended but not yet durable or failed
        self._newest: asyncio.Future | None = None  # the future of the latest batch appended to
        self.bytes_written = self._size
        self._thread = threading.Thread(target=self._commit_loop, name="wal-commit", daemon=True)
        self._thread.start()

    @property
    def path(self) -> Path:
        return self.layout.segment_path(self.segment_first)

    def _open_segment(self, first: int) -> int:
        return os.open(self.layout.segment_path(first), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def append(self, kind: int, payload: bytes, attachment: Any = None, lazy: bool = False) -> asyncio.Future:
        """Append one record; the returned future resolves once it is durable.

        Called on the event loop only. Records appended before the committer
        wakes share one batch, one write and one fsync. A ``lazy`` record
        waits up to ``lazy_delay_s`` for an urgent one to share its fsync.
        """
        if self.failed is not None:
            raise self.failed
        if self._closing:
            raise WalError("journal is closing")
        record = encode_record(kind, payload)
        with self._cond:
            batch = self._open
            if batch.future is None:
                batch.future = self._newest = self._loop.create_future()
            batch.buf += record
            batch.count += 1
            if attachment is not None:
                batch.attachments.append(attachment)
            self.pending_records += 1
            if not lazy and not batch.urgent:
                self._make_urgent(batch)
        if lazy and not batch.urgent and batch.lazy_timer is None:
            batch.lazy_timer = self._loop.call_later(self._lazy_delay_s, self._commit_now, batch)
        return batch.future

    def _commit_now(self, batch: _Batch | None = None) -> None:
        """Make the open batch urgent (if it is still ``batch``, when given): its lazy records wait no longer."""
        with self._cond:
            open_batch = self._open
            if open_batch.buf and not open_batch.urgent and (batch is None or batch is open_batch):
                self._make_urgent(open_batch)

    def _make_urgent(self, batch: _Batch) -> None:
        """Commit ``batch`` soon: on the loop if the disk is fast and the thread idle, else on the thread.

        Called on the loop with ``_cond`` held. Batches complete in append order either way: the
        loop takes one only while the thread has none.
        """
        batch.urgent = True
        if self._with_thread == 0 and self.commit_s <= self._inline_max_s and not self._closing:
            batch.inline = True
            self._loop.call_soon(self._commit_inline)
        else:
            self._with_thread += 1
            self._cond.notify()

    def _commit_inline(self) -> None:
        with self._cond:
            batch = self._open
            if not batch.inline:  # the thread took it already (closing)
                return
            self._open = _Batch()
        self.inline_commits += 1
        error = self._commit(batch)
        now = time.perf_counter()
        self._complete(batch, error, now, now)

    def request_rotation(self) -> None:
        """Start a new segment before the next batch (a snapshot is about to cover this one)."""
        self._rotate_requested = True

    def reset(self) -> int:
        """After a failure, once no batch is outstanding: accept appends again; return ``next_index``.

        Records appended since the failure were never written, so numbering
        resumes at the first record that did not become durable.
        """
        assert self.pending_records == 0, "reset with batches outstanding"
        with self._cond:
            self._broken = None
        self.failed = None
        return self.next_index

    def _commit_loop(self) -> None:
        while True:
            with self._cond:
                while not (self._open.urgent and not self._open.inline) and not self._closing:
                    self._cond.wait()
                if not self._open.buf and self._closing:
                    return
                batch, self._open = self._open, _Batch()
            error = self._commit(batch)
            try:
                self._loop.call_soon_threadsafe(self._complete_from_thread, batch, error, time.perf_counter())
            except RuntimeError:  # loop already closed during interpreter shutdown
                return

    def _commit(self, batch: _Batch) -> WalError | None:
        """Write and fsync ``batch`` unless the journal is broken; a failure breaks it (until reset)."""
        with self._cond:
            broken = self._broken
        if broken is not None:
            return JournalUnavailable(broken.errno, f"journal unavailable: {broken.strerror}")
        started = time.perf_counter()
        error = self._write(batch)
        if error is not None:
            with self._cond:
                self._broken = error
        batch.sync_s = time.perf_counter() - started
        self.commit_s += COMMIT_TIME_WEIGHT * (batch.sync_s - self.commit_s)
        return error

    def _complete_from_thread(self, batch: _Batch, error: WalError | None, durable_at: float) -> None:
        if not batch.inline:  # an inline batch the thread took while closing was never counted
            self._with_thread -= 1
        self.thread_commits += 1
        self._complete(batch, error, durable_at, time.perf_counter())

    def _write(self, batch: _Batch) -> WalError | None:
        """Write and fsync one batch; on any failure cut the segment back so no partial record remains."""
        try:
            if self._cut_back:
                os.ftruncate(self._fd, self._size)
                self._cut_back = False
            if self._size and (self._rotate_requested or self._size >= self._segment_bytes):
                self._rotate()
            view, done = memoryview(batch.buf), 0
            started = time.perf_counter()
            while done < len(view):  # a full disk may take part of a write without raising
                written = os.write(self._fd, view[done:])
                if written <= 0:
                    raise OSError(28, "short write")
                done += written
            written_at = time.perf_counter()
            if self._fsync:
                os.fsync(self._fd)
            batch.write_s, batch.fsync_s = written_at - started, time.perf_counter() - written_at
        except OSError as exc:
            self._cut_back = True
            try:
                os.ftruncate(self._fd, self._size)
                self._cut_back = False
            except OSError:
                pass  # retried before the next write
            return WalError(exc.errno, f"journal write failed: {exc.strerror or exc}")
        self._size += len(batch.buf)
        self.next_index += batch.count
        if self._on_durable_index is not None:
            self._on_durable_index(self.next_index)
        return None

    def _rotate(self) -> None:
        fd = self._open_segment(self.next_index)
        try:
            fsync_directory(self.layout.directory)
        except OSError:
            os.close(fd)
            raise
        os.close(self._fd)
        self._fd, self._size, self.segment_first = fd, 0, self.next_index
        self._rotate_requested = False

    def _complete(self, batch: _Batch, error: WalError | None, durable_at: float, taken_at: float) -> None:
        self.pending_records -= batch.count
        if batch.lazy_timer is not None:
            batch.lazy_timer.cancel()
        fut = batch.future
        if error is not None:
            if self.failed is None:
                self.failed = error
                log.error("%s", error)
            if self._on_failed is not None:
                self._on_failed(batch.attachments, error)
            if fut is not None and not fut.done():
                fut.set_exception(error)
                fut.exception()  # mark retrieved: callers may have gone away
            return
        self.bytes_written += len(batch.buf)
        if self._on_synced is not None:
            self._on_synced(batch, taken_at - durable_at)
        self._on_durable(batch.attachments, durable_at)
        if fut is not None and not fut.done():
            fut.set_result(None)

    async def sync(self) -> None:
        """Wait until everything appended so far is durable (and handed back).

        Batches complete in append order, so the newest batch's future covers all.
        Raises WalError if that batch failed.
        """
        if self.pending_records and self._newest is not None:
            self._commit_now()  # lazy records included
            await asyncio.shield(self._newest)

    async def close(self) -> None:
        """Commit what is open, stop the committer, close the file."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
        # Let the committer's last call_soon_threadsafe callback run.
        await asyncio.sleep(0)
        os.close(self._fd)
