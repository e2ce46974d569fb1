"""The orderIds a shard has acknowledged recently: idempotent submission.

A client that times out and sends the same ``orderId`` again must not have it
executed twice (FIX's ClOrdID uniqueness). Each acknowledged id maps to a
fingerprint of its body and the acknowledgement's timestamp, so a repeat gets
the original reply again and a different body under the same id is refused.

Memory is bounded: ids are kept in slices (each up to 1/16 of the id bound or
of the age bound), and the oldest slice is dropped whole once the window holds
more ids than its bound or the slice is entirely older than the age bound.
So an id is remembered for at least the retention window, less one slice.

Snapshots need the window encoded, and at a million ids that takes a tenth
of a second of the event loop. So the window encodes itself as it grows:
every ``CHUNK_IDS`` ids of a slice become one msgpack chunk, sealed once (a
fraction of a millisecond), and a snapshot takes the sealed chunks as they
are and encodes only the newest, unsealed few.
"""

from __future__ import annotations

import struct
import zlib
from collections import deque
from typing import NamedTuple

import msgspec

SLICES = 16
CHUNK_IDS = 1024
_ENTRY = struct.Struct("<IIq")  # crc32, adler32 of the order's encoding; ack epoch ms
_encode_chunk = msgspec.msgpack.Encoder().encode
_decode_chunk = msgspec.msgpack.Decoder(dict[str, bytes]).decode
# The version-1 snapshot's whole window in one msgpack value (only read, from older journals).
_decode_whole = msgspec.msgpack.Decoder(tuple[int, int, list[tuple[int, int]], dict[str, bytes]]).decode


def fingerprint_entry(encoded_order: bytes | memoryview, ack_ms: int) -> bytes:
    """What the window keeps per id: 64 bits of the body's checksums and the ack time."""
    return _ENTRY.pack(zlib.crc32(encoded_order), zlib.adler32(encoded_order), ack_ms)


def same_body(entry: bytes, candidate: bytes) -> bool:
    return entry[:8] == candidate[:8]


def ack_ms_of(entry: bytes) -> int:
    return _ENTRY.unpack(entry)[2]


class WindowHead(msgspec.Struct, array_like=True):
    """The encoded window apart from its chunks: each slice's (first ack ms, ids), each chunk's byte length."""

    bounds: list[tuple[int, int]]
    chunk_bytes: list[int]


class EncodedWindow(NamedTuple):
    head: WindowHead
    chunks: list[bytes]  # msgpack maps id -> entry, in insertion order; immutable, so safe to write from a thread


class _Slice:
    """Ids of one slice and their sealed chunks: every chunk holds CHUNK_IDS ids but the last of a closed slice."""

    __slots__ = ("chunks", "first_ms", "members", "sealed")

    def __init__(self, first_ms: int) -> None:
        self.first_ms = first_ms
        self.members: list[str] = []  # ids in insertion order
        self.chunks: list[bytes] = []  # encode members[:sealed], in order
        self.sealed = 0


class IdWindow:
    """orderId -> fingerprint entry, bounded by count and age. Event-loop only."""

    def __init__(self, max_ids: int, max_age_ms: int) -> None:
        self.max_ids = max_ids
        self.max_age_ms = max_age_ms
        self._ids: dict[str, bytes] = {}
        self._slices: deque[_Slice] = deque()  # newest last
        self._slice_ids = max(1, max_ids // SLICES)
        self._slice_ms = max(1, max_age_ms // SLICES)

    def __len__(self) -> int:
        return len(self._ids)

    def get(self, order_id: str) -> bytes | None:
        return self._ids.get(order_id)

    def add(self, order_id: str, entry: bytes, ack_ms: int) -> None:
        self._ids[order_id] = entry
        slices = self._slices
        current = slices[-1] if slices else None
        if current is None or len(current.members) >= self._slice_ids or ack_ms - current.first_ms >= self._slice_ms:
            if current is not None:
                self._seal(current, closed=True)  # it grows no more: its short tail becomes its last chunk
            current = _Slice(ack_ms)
            slices.append(current)
            self._expire(ack_ms)
        current.members.append(order_id)
        if len(current.members) - current.sealed >= CHUNK_IDS:
            self._seal(current)

    def _seal(self, piece: _Slice, closed: bool = False) -> None:
        """Encode the slice's unsealed ids in whole chunks (and, once it is closed, the rest)."""
        members = piece.members
        while len(members) - piece.sealed >= CHUNK_IDS or (closed and len(members) > piece.sealed):
            end = min(piece.sealed + CHUNK_IDS, len(members))
            piece.chunks.append(self._encode_ids(members[piece.sealed:end]))
            piece.sealed = end

    def _encode_ids(self, members: list[str]) -> bytes:
        ids = self._ids
        return _encode_chunk({order_id: ids[order_id] for order_id in members})

    def forget(self, order_id: str) -> None:
        """The order was never acknowledged (its journal write failed): rare, so a search is fine.

        Keeps the invariants the snapshot relies on: the slices, concatenated,
        list exactly the window's ids in insertion order, and the sealed
        chunks encode their slice's first ids (those from the forgotten one's
        chunk on are sealed again).
        """
        if self._ids.pop(order_id, None) is None:
            return
        for piece in reversed(self._slices):  # a failed order is among the newest
            members = piece.members
            for i in range(len(members) - 1, -1, -1):
                if members[i] == order_id:
                    del members[i]
                    if i < piece.sealed:
                        kept = i // CHUNK_IDS
                        del piece.chunks[kept:]
                        piece.sealed = kept * CHUNK_IDS
                        self._seal(piece, closed=piece is not self._slices[-1])
                    return

    def clear(self) -> None:
        self._ids.clear()
        self._slices.clear()

    def _expire(self, now_ms: int) -> None:
        slices, ids = self._slices, self._ids
        while len(slices) > 1 and (len(ids) > self.max_ids or slices[1].first_ms <= now_ms - self.max_age_ms):
            for order_id in slices.popleft().members:
                del ids[order_id]

    # -- snapshots -----------------------------------------------------------

    def encode(self, exclude_newest: int = 0) -> EncodedWindow:
        """The window as chunks, leaving out its newest ``exclude_newest`` ids.

        The newest ids are those of orders journaled after a snapshot's cut:
        replay adds them back from their records. Costs the encoding of the
        ids no sealed chunk holds: fewer than CHUNK_IDS, plus the excluded
        ids' chunk.
        """
        keep = [len(piece.members) for piece in self._slices]
        left = min(exclude_newest, len(self._ids))
        for i in range(len(keep) - 1, -1, -1):
            if not left:
                break
            take = min(left, keep[i])
            keep[i] -= take
            left -= take
        bounds, chunks = [], []
        for piece, count in zip(self._slices, keep):
            if not count:
                continue
            bounds.append((piece.first_ms, count))
            whole = len(piece.chunks) if count >= piece.sealed else count // CHUNK_IDS
            covered = piece.sealed if count >= piece.sealed else whole * CHUNK_IDS
            chunks += piece.chunks[:whole]
            if count > covered:
                chunks.append(self._encode_ids(piece.members[covered:count]))
        return EncodedWindow(WindowHead(bounds, [len(c) for c in chunks]), chunks)

    def restore(self, head: WindowHead, chunks: list[bytes | memoryview]) -> None:
        """Rebuild from ``encode()``'s output (a snapshot); this window keeps its own bounds.

        The chunks become the slices' sealed chunks again (but a short last
        one of the newest slice, which still grows), so the first snapshot
        after a restart encodes no more than any other.
        """
        decoded = [_decode_chunk(chunk) for chunk in chunks]
        self._ids, self._slices = {}, deque()
        ids = self._ids
        for part in decoded:
            ids.update(part)
        order, start, position = list(ids), 0, 0
        for first_ms, count in head.bounds:
            piece = _Slice(first_ms)
            piece.members = order[start:start + count]
            start += count
            while piece.sealed < count and position < len(decoded):
                piece.chunks.append(bytes(chunks[position]))
                piece.sealed += len(decoded[position])
                position += 1
            self._slices.append(piece)
        newest = self._slices[-1] if self._slices else None
        if newest is not None and newest.sealed % CHUNK_IDS:
            newest.sealed -= newest.sealed % CHUNK_IDS
            newest.chunks.pop()

    def restore_whole(self, blob: bytes) -> None:
        """Rebuild from a version-1 snapshot's window (one msgpack value), sealing its chunks as it goes."""
        _max_ids, _max_age, bounds, ids = _decode_whole(blob)
        self._ids, self._slices = ids, deque()
        order, start = list(ids), 0
        for first, count in bounds:
            piece = _Slice(first)
            piece.members = order[start:start + count]
            start += count
            self._slices.append(piece)
        for piece in self._slices:
            self._seal(piece, closed=piece is not self._slices[-1])
