"""The relay process: tail one shard's journal, publish its events, keep a durable delivery mark.

Every ``RELAY_POLL_MS`` it reads the records the shard has made durable
since the last look (``tail``): an order record becomes ORDER_PLACED (its
timestamp the order's acknowledgement, so a copy sent again is the same
bytes), a match record is MATCH_EXECUTED as journaled; topics, keys,
partition and ids are those the shard used to send itself. Once a second
it writes its mark (``shard.handoff``): every record below has had its
event confirmed. A relay killed at any moment restarts from its mark and
sends again what came after it (at-least-once; ``orderId`` and ``matchId``
let consumers drop copies); a shard killed at any moment loses nothing the
relay has not read, since the relay reads only what is durable.

A broker outage touches only this process: its producer's queue waits, and
once ``RELAY_MAX_PENDING`` events wait it stops reading, so the backlog stays
in the journal, not in memory. The shard keeps every segment from the
relay's mark on (compaction follows the mark, ``shard.journal.compact``).

Routes on RELAY_METRICS_PORT: ``/metrics``, ``/health`` (the process serves),
``/ready`` (it has found the journal; never the broker: on Kubernetes the
relay's readiness is its pod's, and a broker outage must not take the shard
out of its Service), ``/stats`` (JSON: mark, durable index, pending).
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from time import perf_counter, time

from aiohttp import web

from matchlab.httpjson import json_response, start_metrics_site
from matchlab.relay.config import RelayConfig
from matchlab.relay.delivery import Deliveries
from matchlab.relay.metrics import RelayMetrics
from matchlab.relay.tail import JournalGapError, JournalTail
from matchlab.service import PRODUCER_FLUSH_S, SHUTDOWN_GRACE_S, serve_until_signalled
from matchlab.shard.events import EventPublisher
from matchlab.shard.handoff import DurableIndexReader, read_relay_mark, write_relay_mark
from matchlab.shard.journal import resolve_journal
from matchlab.shard.records import (
    ORDER_KINDS,
    REC_MATCH,
    decode_order_record,
    match_symbol,
    match_time_ms,
    order_placed,
)
from matchlab.topology import TOPIC_MATCHES, TOPIC_ORDERS

log = logging.getLogger(__name__)

MARK_INTERVAL_S = 1.0
# Records read per look at most: the loop serves delivery reports and scrapes in between.
READ_RECORDS = 4096
RETRY_S = 1.0


class Relay:
    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        shard = config.shard
        self.metrics = RelayMetrics(shard.shard_id)
        self.layout = resolve_journal(shard.wal_path)
        self.publisher = EventPublisher(shard.kafka_bootstrap, f"me-relay-{shard.shard_id}", config.linger_ms,
                                        shard.event_partition, errors=self.metrics.errors)
        self.durable = DurableIndexReader(self.layout)
        start = self._start_index()
        self.tail = JournalTail(self.layout, start)
        self.deliveries = Deliveries(start)
        self.written_mark = start
        self._unsent: list[tuple[int, str, bytes, bytes]] = []  # refused by a full local queue: sent next look
        self._tasks: list[asyncio.Task] = []
        self._runner: web.AppRunner | None = None
        self.metrics.bind_lag(self._lag_records, self._lag_seconds)

    def _start_index(self) -> int:
        """The last durable mark; without one (a new journal, or one the shard wrote in-process) its oldest record."""
        mark = read_relay_mark(self.layout)
        segments = self.layout.segments()
        oldest = segments[0][0] if segments else 0
        if mark is None:
            log.info("no delivery mark in %s: publishing the journal from record %d", self.layout.directory, oldest)
            return oldest
        if mark < oldest:
            log.error("records %d-%d are gone from the journal before their events were confirmed: they are lost; "
                      "publishing from %d", mark, oldest - 1, oldest)
            return oldest
        return mark

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        # No publisher.start(): each look serves the delivery reports itself (one wake-up, not two timers).
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._pump_forever(), name="relay-pump"),
                       loop.create_task(self._mark_forever(), name="relay-mark")]
        self._runner = await start_metrics_site(
            self.metrics.registry, self.config.shard.bind_host, self.config.metrics_port, self.get_health,
            SHUTDOWN_GRACE_S, {"/ready": self.get_ready, "/stats": self.get_stats},
        )
        log.info("relay of shard %s up (metrics %d): journal %s from record %d, to %s", self.config.shard_id,
                 self.config.metrics_port, self.layout.directory, self.deliveries.next_index,
                 self.config.shard.kafka_bootstrap)

    async def stop(self) -> None:
        """Stop reading, let the producer deliver what it holds (bounded), write the final mark."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        undelivered = await self.publisher.close(PRODUCER_FLUSH_S)
        await self._write_mark()
        self.tail.close()
        self.durable.close()
        if self._runner is not None:
            await self._runner.cleanup()
        log.info("relay of shard %s stopped at mark %d (%d events unconfirmed)", self.config.shard_id,
                 self.written_mark, undelivered)

    # -- reading and sending -------------------------------------------------

    async def _pump_forever(self) -> None:
        poll_s = self.config.poll_ms / 1000
        failing = ""
        while True:
            try:
                read = self.pump()
                failing = ""
            except JournalGapError as exc:  # records it owes are gone: say so, and go on with what is there
                log.error("%s; publishing from the oldest segment on", exc)
                self._reopen()
                read = 0
            except OSError as exc:  # the journal's folder unreadable for now: retried, said once
                if str(exc) != failing:
                    failing = str(exc)
                    log.error("cannot read the journal: %s; retrying", exc)
                read = 0
                await asyncio.sleep(RETRY_S)
            await asyncio.sleep(0 if read >= READ_RECORDS else poll_s)

    def _reopen(self) -> None:
        """Start over from the mark on disk (or the oldest record): a new journal, or a gap in this one."""
        self.tail.close()
        start = self._start_index()
        self.tail = JournalTail(self.layout, start)
        self.deliveries = Deliveries(start)
        self.written_mark = start

    def pump(self) -> int:
        """One look: serve delivery reports, send what waits, then read and send the new durable records; return
        records read."""
        self.publisher.poll()
        if self._unsent:
            waiting, self._unsent = self._unsent, []
            for item in waiting:
                self._produce(*item)
        durable = self.durable.read()
        room = self.config.max_pending - self.deliveries.pending
        if durable is None or room <= 0 or self._unsent:
            return 0
        records = self.tail.read(durable, min(room, READ_RECORDS))
        deliveries, now_ms = self.deliveries, int(time() * 1000)
        for index, kind, payload in records:
            if kind == REC_MATCH:
                deliveries.sent(index, match_time_ms(payload))
                self._produce(index, TOPIC_MATCHES, match_symbol(payload), payload)
            elif kind in ORDER_KINDS:
                ack_ms, _, order = decode_order_record(kind, payload)
                deliveries.sent(index, ack_ms or now_ms)
                self._produce(index, TOPIC_ORDERS, order.symbol.encode(), order_placed(order, ack_ms or now_ms))
            else:
                deliveries.skip(index)
        return len(records)

    def _produce(self, index: int, topic: str, key: bytes, event: bytes) -> None:
        sent = self.publisher.publish(topic, key, event, partial(self._confirmed, index, topic, perf_counter()),
                                      partial(self._failed, index, topic, key, event))
        if not sent:
            self._unsent.append((index, topic, key, event))

    def _confirmed(self, index: int, topic: str, produced_at: float) -> None:
        self.deliveries.confirmed(index)
        self.metrics.publish.observe(perf_counter() - produced_at)
        self.metrics.events[topic].inc()

    def _failed(self, index: int, topic: str, key: bytes, event: bytes, _error: str) -> None:
        self._unsent.append((index, topic, key, event))  # at-least-once: the event is owed until confirmed

    # -- the mark ------------------------------------------------------------

    async def _mark_forever(self) -> None:
        while True:
            await asyncio.sleep(MARK_INTERVAL_S)
            if self.durable.replaced():  # a new journal in the folder (the shard never replaces the file)
                log.warning("%s was replaced: a new journal, read from its start", self.durable.path)
                self._reopen()
            await self._write_mark()

    async def _write_mark(self) -> None:
        mark = self.deliveries.mark()
        if mark == self.written_mark:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(None, write_relay_mark, self.layout, mark)
        except OSError as exc:  # kept in memory; the next interval tries again
            log.error("delivery mark %d not written: %s", mark, exc)
            return
        self.written_mark = mark

    # -- what it tells -------------------------------------------------------

    def _lag_records(self) -> float:
        durable = self.durable.read()
        return 0.0 if durable is None else max(0, durable - self.deliveries.mark())

    def _lag_seconds(self) -> float:
        oldest = self.deliveries.oldest_ms()
        return 0.0 if oldest is None else max(0.0, time() - oldest / 1000)

    async def get_health(self, _request: web.Request) -> web.Response:
        return json_response(200, {"status": "UP", "component": "event-relay", "shardId": self.config.shard_id})

    async def get_ready(self, _request: web.Request) -> web.Response:
        """Ready once the shard's journal is there to tail (whatever the broker does)."""
        if not self.durable.available():
            return json_response(503, {"status": "NOT_READY", "shardId": self.config.shard_id,
                                       "reason": f"no durable index in {self.layout.directory} yet (shard not started)"})
        return json_response(200, {"status": "READY", "shardId": self.config.shard_id})

    async def get_stats(self, _request: web.Request) -> web.Response:
        deliveries = self.deliveries
        return json_response(200, {
            "shardId": self.config.shard_id,
            "durable": self.durable.read(),
            "read": deliveries.next_index,
            "mark": deliveries.mark(),
            "writtenMark": self.written_mark,
            "pending": deliveries.pending,
            "lagRecords": self._lag_records(),
            "lagSeconds": self._lag_seconds(),
        })


async def serve(config: RelayConfig) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully."""
    await serve_until_signalled(Relay(config), log)
