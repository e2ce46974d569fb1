"""The orderIds a shard has acknowledged recently: idempotent submission.

A client that times out and sends the same ``orderId`` again must not have it
executed twice (FIX's ClOrdID uniqueness). Each acknowledged id maps to a
fingerprint of its body and the acknowledgement's timestamp, so a repeat gets
the original reply again and a different body under the same id is refused.

Memory is bounded: ids are kept in slices (each up to 1/16 of the id bound or
of the age bound), and the oldest slice is dropped whole once the window holds
more ids than its bound or the slice is entirely older than the age bound.
So an id is remembered for at least the retention window, less one slice.
"""

from __future__ import annotations

import struct
import zlib
from collections import deque

import msgspec

SLICES = 16
_ENTRY = struct.Struct("<IIq")  # crc32, adler32 of the order's encoding; ack epoch ms
_decode_snapshot = msgspec.msgpack.Decoder(tuple[int, int, list[tuple[int, int]], dict[str, bytes]]).decode


def fingerprint_entry(encoded_order: bytes | memoryview, ack_ms: int) -> bytes:
    """What the window keeps per id: 64 bits of the body's checksums and the ack time."""
    return _ENTRY.pack(zlib.crc32(encoded_order), zlib.adler32(encoded_order), ack_ms)


def same_body(entry: bytes, candidate: bytes) -> bool:
    return entry[:8] == candidate[:8]


def ack_ms_of(entry: bytes) -> int:
    return _ENTRY.unpack(entry)[2]


class IdWindow:
    """orderId -> fingerprint entry, bounded by count and age. Event-loop only."""

    def __init__(self, max_ids: int, max_age_ms: int) -> None:
        self.max_ids = max_ids
        self.max_age_ms = max_age_ms
        self._ids: dict[str, bytes] = {}
        # [first ack ms, ids added to this slice]; newest last.
        self._slices: deque[list] = deque()
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
        if current is None or len(current[1]) >= self._slice_ids or ack_ms - current[0] >= self._slice_ms:
            current = [ack_ms, []]
            slices.append(current)
            self._expire(ack_ms)
        current[1].append(order_id)

    def forget(self, order_id: str) -> None:
        """The order was never acknowledged (its journal write failed): rare, so a search is fine.

        Keeps the invariant the snapshot relies on: the slices, concatenated,
        list exactly the window's ids in insertion order.
        """
        if self._ids.pop(order_id, None) is None:
            return
        for _first, members in reversed(self._slices):  # a failed order is among the newest
            for i in range(len(members) - 1, -1, -1):
                if members[i] == order_id:
                    del members[i]
                    return

    def clear(self) -> None:
        self._ids.clear()
        self._slices.clear()

    def _expire(self, now_ms: int) -> None:
        slices, ids = self._slices, self._ids
        while len(slices) > 1 and (len(ids) > self.max_ids or slices[1][0] <= now_ms - self.max_age_ms):
            for order_id in slices.popleft()[1]:
                del ids[order_id]

    # -- snapshots -----------------------------------------------------------

    def encode(self, exclude_newest: int = 0) -> bytes:
        """The window as msgpack (bounds, slice sizes, ids in insertion order), leaving out its newest ids.

        The newest ids are those of orders journaled after a snapshot's cut:
        replay adds them back from their records.
        """
        ids = self._ids
        held = [ids.popitem() for _ in range(min(exclude_newest, len(ids)))]  # newest first, O(1) each
        counts = [len(members) for _, members in self._slices]
        left = len(held)
        for i in range(len(counts) - 1, -1, -1):
            if not left:
                break
            take = min(left, counts[i])
            counts[i] -= take
            left -= take
        bounds = [(first, count) for (first, _), count in zip(self._slices, counts) if count]
        try:
            return msgspec.msgpack.encode((self.max_ids, self.max_age_ms, bounds, ids))
        finally:
            for order_id, entry in reversed(held):
                ids[order_id] = entry

    def restore(self, blob: bytes) -> None:
        """Rebuild from ``encode()``'s output (a snapshot); this window keeps its own bounds."""
        _max_ids, _max_age, bounds, ids = _decode_snapshot(blob)
        self._ids = ids
        self._slices.clear()
        order, start = list(ids), 0
        for first, count in bounds:
            self._slices.append([first, order[start:start + count]])
            start += count
