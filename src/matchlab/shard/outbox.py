"""Which journal records still have an event on its way to the broker (the in-process publisher).

With EVENTS_MODE=inprocess, events leave the shard through librdkafka's
in-memory queue, and a kill -9 loses whatever that queue held. So the
journal doubles as an outbox: every
record that yields an event (an order, a match) is *pending* from its append
until the broker confirms the event, and the pipeline now and then journals
a delivery mark — the index of the lowest record still pending. On restart,
the events of every record at or after the last mark are published again.

That is at-least-once across a crash: an event confirmed after the last mark
goes out twice (``orderId`` and ``matchId`` are unique, so a consumer can
drop the copy). Across a broker outage nothing is duplicated: a request waits
for its answer longer than any planned outage, so the producer does not
retry it (``events``).
"""

from __future__ import annotations

import heapq


class Outbox:
    """Record indices in journal order, and which of them await delivery. Event-loop only."""

    def __init__(self, next_index: int, mark: int = 0) -> None:
        self.next_index = next_index  # the index the next appended record gets
        self.last_mark = mark
        self._pending: set[int] = set()
        self._heap: list[int] = []  # lazily pruned: may hold delivered indices
        self._highest_held = -1

    def take_index(self) -> int:
        index = self.next_index
        self.next_index += 1
        return index

    def hold(self, index: int) -> None:
        self._pending.add(index)
        heapq.heappush(self._heap, index)
        self._highest_held = max(self._highest_held, index)

    def delivered(self, index: int) -> None:
        self._pending.discard(index)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def mark(self) -> int:
        """Every record below this index has had its event delivered."""
        heap, pending = self._heap, self._pending
        while heap and heap[0] not in pending:
            heapq.heappop(heap)
        return heap[0] if heap else self.next_index

    def new_mark(self) -> int | None:
        """The mark to journal now, or None if it would cover no event the last one did not.

        (A mark record is itself a record: without this check an idle shard
        would journal a new mark past its previous one every interval.)
        """
        mark = self.mark()
        if mark > self.last_mark and self._highest_held >= self.last_mark:
            return mark
        return None
