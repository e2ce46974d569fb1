"""Which records the relay has sent and the broker has not confirmed yet, and the mark that follows.

Records are read in journal order. One without an event (a seed, a reset, an
in-process delivery mark) counts as delivered at once; one with an event is
pending until the broker confirms it, confirmations may come in any order.
The mark is the lowest pending record (or the next one to read): every
record below it has had its event confirmed, which is what the relay makes
durable and restarts from.
"""

from __future__ import annotations

from collections import deque


class Deliveries:
    """Event-loop only."""

    def __init__(self, next_index: int) -> None:
        self.next_index = next_index  # the next record to be read
        self._pending: dict[int, int] = {}  # record -> the event's time (epoch ms): its age is the relay's lag
        self._order: deque[int] = deque()  # pending records in journal order, lazily pruned of confirmed ones

    def skip(self, index: int) -> None:
        """A record without an event."""
        self.next_index = index + 1

    def sent(self, index: int, event_ms: int) -> None:
        self._pending[index] = event_ms
        self._order.append(index)
        self.next_index = index + 1

    def confirmed(self, index: int) -> None:
        self._pending.pop(index, None)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def mark(self) -> int:
        """Every record below this one has had its event confirmed."""
        order, pending = self._order, self._pending
        while order and order[0] not in pending:
            order.popleft()
        return order[0] if order else self.next_index

    def oldest_ms(self) -> int | None:
        """The time of the oldest event not yet confirmed, if any."""
        mark = self.mark()
        return self._pending.get(mark)
