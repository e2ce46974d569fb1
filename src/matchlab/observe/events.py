"""Reading the experiment's event topics back, for checks and reconciliation.

Partitions are assigned directly (no consumer group): Tansu's first group
join takes ~20 s, and a reader of the whole topic needs no group anyway.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import orjson
from confluent_kafka import Consumer, KafkaError, TopicPartition

from matchlab.topology import PARTITIONS

POLL_S = 0.2
LINGER_S = 1.0  # keep reading briefly after the wanted count, so duplicates would show


def read_topic(
    bootstrap: str,
    topic: str,
    want: int | None = None,
    timeout: float = 20.0,
    keep: Callable[[dict], bool] = lambda _e: True,
) -> list[dict]:
    """Events of ``topic`` from the beginning that ``keep`` accepts.

    Stops at ``want`` kept events (plus a short linger), at the end of every
    partition when ``want`` is None, or at ``timeout``. Pass ``want`` wherever
    the count is known: right after records are acknowledged, Tansu 0.6 can
    still report a partition's end at offset 0 (seen in about one read in
    ten), so "the end of every partition" may come before the records.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"matchlab-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    events: list[dict] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + timeout
    linger_until: float | None = None
    try:
        while time.monotonic() < deadline:
            if linger_until is not None and time.monotonic() >= linger_until:
                break
            msg = consumer.poll(POLL_S)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())
                    if want is None and len(at_end) == PARTITIONS:
                        break
                continue
            event = orjson.loads(msg.value())
            event["_key"] = msg.key().decode() if msg.key() else None
            event["_partition"] = msg.partition()
            if keep(event):
                events.append(event)
                if want is not None and len(events) >= want and linger_until is None:
                    linger_until = time.monotonic() + LINGER_S
    finally:
        consumer.close()
    return events


def read_ids(bootstrap: str, topic: str, field: str, prefix: str, want: int, timeout: float) -> list[str]:
    """``field`` of every event on ``topic`` whose value starts with ``prefix``, repeats included (for reconciling)."""
    events = read_topic(bootstrap, topic, want=want, timeout=timeout,
                        keep=lambda e: str(e.get(field, "")).startswith(prefix))
    return [e[field] for e in events]


def count_events_between(bootstrap: str, topic: str, windows: dict[str, tuple[float, float]], timeout: float,
                         want: int | None = None) -> int:
    """Distinct ``matchId``s of each shard's events stamped in its own window (t0, t1] (unix seconds).

    Match ids start with the shard's id ("a-17"); events carry epoch ms.
    """
    bounds = {f"{shard}-": (t0 * 1000, t1 * 1000) for shard, (t0, t1) in windows.items()}

    def keep(e: dict) -> bool:
        window = bounds.get(str(e.get("matchId", "")).split("-", 1)[0] + "-")
        return window is not None and window[0] < e.get("timestamp", 0) <= window[1]

    events = read_topic(bootstrap, topic, want=want, timeout=timeout, keep=keep)
    return len({e.get("matchId") for e in events})
