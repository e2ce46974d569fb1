"""Start-up: the newest valid snapshot, then every journal record after it, through the same engine.

What a restart must rebuild exactly: the books, the match counter and the id
window as of the last durable record; and, with the in-process publisher,
which events were not confirmed delivered before the stop (their records
are read from the delivery mark on, even below the snapshot's cut). A torn
record at a segment's tail is cut off (``wal.recover``); a torn or corrupt
snapshot falls back to the previous one.
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass

from matchlab.shard.engine import MatchingEngine
from matchlab.shard.idwindow import IdWindow
from matchlab.shard.journal import JournalCorruptError, JournalLayout, read_snapshot
from matchlab.shard.replay import Replayer
from matchlab.shard.snapshots import SnapshotCorrupt, restore
from matchlab.shard.wal import recover

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recovered:
    segment_first: int  # the newest segment's first record: appends continue there
    next_index: int  # the next record's number
    cut: int  # the snapshot's (0 without one)
    mark: int  # the delivery mark replay ended with
    fed: int  # records replayed
    undelivered: list[tuple[int, str, bytes, bytes]]  # (index, topic, key, event) to publish again
    unjournaled: list[tuple[int, bytes, bytes]]  # (match n, key, event): matches whose record was torn off


def recover_journal(layout: JournalLayout, engine: MatchingEngine, ids: IdWindow, owes_events: bool,
                    now_ms: int) -> Recovered:
    """Rebuild ``engine`` and ``ids`` from the journal in ``layout``."""
    layout.remove_temp_files()
    # Replay allocates millions of objects that all stay alive: collecting
    # cycles meanwhile would only rescan them (it can double the replay time).
    collecting = gc.isenabled()
    gc.disable()
    try:
        replayer = _restore_snapshot(layout, engine, ids, owes_events)
        segment_first, next_index = _replay_segments(layout, replayer)
        undelivered, unjournaled = replayer.finish(now_ms)
    finally:
        if collecting:
            gc.enable()
    return Recovered(segment_first, next_index, replayer.cut, replayer.mark, replayer.fed, undelivered, unjournaled)


def _restore_snapshot(layout: JournalLayout, engine: MatchingEngine, ids: IdWindow, owes_events: bool) -> Replayer:
    """A replayer positioned after the newest valid snapshot (or at the journal's start)."""
    for cut, path in reversed(layout.snapshots()):
        snapshot = read_snapshot(path)
        try:
            if snapshot is None or snapshot.cut != cut:
                raise SnapshotCorrupt("checksum, length or header does not hold")
            match_count = restore(snapshot, engine, ids)
        except SnapshotCorrupt as exc:
            log.error("snapshot %s is torn or corrupt (%s); falling back to the previous one", path, exc)
            engine.reset()
            ids.clear()
            continue
        log.info("restored snapshot %s (record %d, %d ids in the window)", path.name, cut, len(ids))
        return Replayer(engine, ids, cut, snapshot.mark, match_count, owes_events)
    return Replayer(engine, ids, owes_events=owes_events)


def _replay_segments(layout: JournalLayout, replayer: Replayer) -> tuple[int, int]:
    """Feed every segment the replay needs; return (the last segment's first index, the next index).

    From the cut on, and from the delivery mark on where events are owed.
    """
    start = min(replayer.cut, replayer.mark) if replayer.owes_events else replayer.cut
    segments = layout.segments()
    if not segments:
        return replayer.cut, replayer.cut
    if segments[0][0] > start:
        raise JournalCorruptError(
            f"journal {layout.directory}: records from {start} are needed but the oldest segment starts at "
            f"{segments[0][0]} ({segments[0][1].name}) and no older snapshot is valid"
        )
    first = next_index = segments[0][0]
    for position, (first, path) in enumerate(segments):
        following = segments[position + 1][0] if position + 1 < len(segments) else None
        if following is not None and following <= start:
            next_index = following
            continue  # wholly before what the replay needs
        if first != next_index:
            raise JournalCorruptError(f"journal {layout.directory}: segment {path.name} starts at record {first}, expected {next_index}")
        skip = max(0, start - first)  # below the snapshot and the delivery mark: not needed
        records = recover(path, skip)
        feed, base = replayer.feed, first + skip
        for offset, (kind, payload) in enumerate(records):
            feed(base + offset, kind, payload)
        next_index = base + len(records)
        if following is not None and following != next_index:
            raise JournalCorruptError(
                f"journal {layout.directory}: segment {path.name} ends at record {next_index} "
                f"but the next one starts at {following}"
            )
    return first, next_index
