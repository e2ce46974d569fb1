"""What the pipeline attaches to each journal record: the entries of its ring, by kind.

A record's attachment comes back from the group commit when the record is
durable (or failed), in journal order; orders, seeds and resets then join
the ring and are applied by the matcher, match records release their event.
``index`` is always the record's number in the journal.
"""

from __future__ import annotations

import asyncio
from typing import NamedTuple

from matchlab.shard.orders import Order


class OrderEntry(NamedTuple):
    order: Order
    received_at: float  # perf_counter at HTTP receipt: match latency counts from here
    appended_at: float  # perf_counter at the journal append: the append-to-durable histogram
    index: int


class SeedEntry(NamedTuple):
    orders: list[Order]
    applied: asyncio.Future  # resolved once the books hold them
    index: int


class ResetEntry(NamedTuple):
    applied: asyncio.Future
    index: int


class MatchEntry(NamedTuple):
    """A match record: the event it carries, sent once the record is durable (or journaled again if it failed)."""

    n: int  # the match number (matchId "<shard>-<n>")
    key: bytes  # the event's key: its symbol
    event: bytes
    index: int


RingEntry = OrderEntry | SeedEntry | ResetEntry
Attachment = RingEntry | MatchEntry
