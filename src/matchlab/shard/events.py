"""Publishing MATCH_EXECUTED / ORDER_PLACED events over the Kafka protocol: the relay's producer, and
the shard's own with EVENTS_MODE=inprocess (the only module of the shard that loads the Kafka client,
and only then).

``produce()`` only enqueues into librdkafka's local queue, so publishing never
blocks the caller's loop, and a broker outage only lengthens that queue. The
producer sends with acks=all, one request in flight at a time (so retries
keep the order), and waits for a request's answer longer than any planned
outage, so events wait and arrive once the broker is back, with no loss and
no duplicates; a connection lost after the broker wrote a request can repeat
it (at-least-once: consumers drop copies by id). Delivery reports are served
by a loop timer.

Not librdkafka's idempotent producer: while its window of five requests is
in flight to a broker that does not answer (frozen, partitioned), its broker
thread wakes with a zero timeout for as long as messages wait, and spins
(0.55 of a core per shard measured here, 0.99 for a bare producer at 300
messages/s; librdkafka #3692). That coupled every shard to a broker outage
through the CPU, the one thing the outage must not reach.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from time import perf_counter

from confluent_kafka import KafkaError, Producer

log = logging.getLogger(__name__)
LOG_REPEAT_S = 30.0

POLL_INTERVAL_S = 0.05
PARTITION_BY_KEY = -1  # librdkafka's RD_KAFKA_PARTITION_UA: its partitioner picks by key
# Longer than any outage the experiments inject (A4: 120 s), so none loses events.
DELIVERY_TIMEOUT_MS = 600_000
# How long a sent request waits for its answer (librdkafka's ceiling): no retry, so no copy, within an outage.
REQUEST_TIMEOUT_MS = 300_000
LOCAL_QUEUE_MESSAGES = 2_000_000


class _OncePerInterval(logging.Filter):
    """librdkafka repeats a down broker's error every reconnect; say it once per interval."""

    def __init__(self, interval_s: float) -> None:
        super().__init__()
        self._interval = interval_s
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        # librdkafka logs ("%s [%s] %s", facility, client, text): key on facility.
        key = str(record.args[0]) if isinstance(record.args, tuple) and record.args else str(record.msg)
        now = record.created
        if now - self._last.get(key, -self._interval) < self._interval:
            return False
        self._last[key] = now
        return True


def _librdkafka_logger(client_id: str) -> logging.Logger:
    logger = logging.getLogger(f"librdkafka.{client_id}")
    if not logger.filters:
        logger.addFilter(_OncePerInterval(LOG_REPEAT_S))
    return logger


class EventPublisher:
    """Fire-and-forget publishing with delivery failures counted, not raised.

    ``errors`` (``inc()``) counts failed deliveries; ``publish_seconds`` (``observe()``) times each
    ``produce()`` call.
    """

    def __init__(self, bootstrap: str, client_id: str, linger_ms: int, partition: int | None = None, *,
                 errors=None, publish_seconds=None) -> None:
        self._errors = errors
        self._publish_seconds = publish_seconds
        self.delivered = 0
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "client.id": client_id,
                "enable.idempotence": False,  # see the module docstring: it spins while a broker is frozen
                "acks": "all",
                "max.in.flight.requests.per.connection": 1,
                "socket.timeout.ms": REQUEST_TIMEOUT_MS,
                # Topics are the harness's to create (12 partitions); a producer
                # that reaches the broker first must not auto-create them.
                "allow.auto.create.topics": False,
                # Off the matching path: waiting to fill a produce request costs no match latency.
                "linger.ms": linger_ms,
                "message.timeout.ms": DELIVERY_TIMEOUT_MS,
                "queue.buffering.max.messages": LOCAL_QUEUE_MESSAGES,
                "reconnect.backoff.max.ms": 1000,
                "error_cb": self._on_error,
                "logger": _librdkafka_logger(client_id),
            }
        )
        self._partition = PARTITION_BY_KEY if partition is None else partition
        self._poll_task: asyncio.Task | None = None
        self._last_error = ""

    def start(self) -> None:
        self._poll_task = asyncio.get_running_loop().create_task(self._poll_forever())

    async def _poll_forever(self) -> None:
        while True:
            self._producer.poll(0)
            await asyncio.sleep(POLL_INTERVAL_S)

    def _on_error(self, err: KafkaError) -> None:
        # The broker being down is expected (A4); say so once per kind of error.
        text = err.str()
        if text != self._last_error:
            self._last_error = text
            log.warning("kafka: %s", text)

    def _on_delivery(self, on_delivered: Callable[[], None] | None, on_failed: Callable[[str], None] | None,
                     err: KafkaError | None, _msg) -> None:
        if err is None:
            self.delivered += 1
            if on_delivered is not None:
                on_delivered()
            return
        if self._errors is not None:
            self._errors.inc()
        log.error("event delivery failed: %s", err.str())
        if on_failed is not None:
            on_failed(err.str())

    def publish(self, topic: str, key: bytes, value: bytes, on_delivered: Callable[[], None] | None = None,
                on_failed: Callable[[str], None] | None = None) -> bool:
        """Enqueue one event; ``on_delivered`` runs once the broker has confirmed it, ``on_failed`` if it never
        will. False (nothing enqueued, counted as an error) when the local queue is full."""
        t0 = perf_counter()
        try:
            self._producer.produce(topic, value, key, partition=self._partition,
                                   on_delivery=partial(self._on_delivery, on_delivered, on_failed))
        except BufferError:
            if self._errors is not None:
                self._errors.inc()
            log.error("event not enqueued: producer queue full (%d messages)", LOCAL_QUEUE_MESSAGES)
            return False
        if self._publish_seconds is not None:
            self._publish_seconds.observe(perf_counter() - t0)
        return True

    def poll(self) -> None:
        """Serve delivery reports now (``start()`` also does every POLL_INTERVAL_S)."""
        self._producer.poll(0)

    def queued(self) -> int:
        return len(self._producer)

    async def close(self, timeout_s: float) -> int:
        """Flush for at most ``timeout_s``; return how many events stayed undelivered."""
        if self._poll_task is not None:
            self._poll_task.cancel()
        remaining = await asyncio.get_running_loop().run_in_executor(None, self._producer.flush, timeout_s)
        if remaining:
            log.error("%d events undelivered at shutdown (broker unreachable)", remaining)
        return remaining


class NullPublisher:
    """Used when KAFKA_BOOTSTRAP is empty: events are counted, not sent."""

    def __init__(self) -> None:
        self.delivered = 0

    def start(self) -> None:
        pass

    def publish(self, topic: str, key: bytes, value: bytes, on_delivered: Callable[[], None] | None = None,
                on_failed: Callable[[str], None] | None = None) -> bool:
        self.delivered += 1
        if on_delivered is not None:
            on_delivered()
        return True

    def poll(self) -> None:
        pass

    def queued(self) -> int:
        return 0

    async def close(self, timeout_s: float) -> int:
        return 0
