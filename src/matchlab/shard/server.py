"""The shard's HTTP API (docs/internals/design.md §3.1) and its metrics endpoint.

Routes:
    POST /orders          one order; 200 once durable and queued (again, marked "duplicate", for a
                          repeated orderId), 400, 409 (same orderId, other order), 413, 415, 503
    POST /seed            {"orders": [...]}: resting orders inserted without matching   (token)
    POST /admin/reset     empty every book (journaled, so it survives a restart)       (token)
    POST /admin/snapshot  take the next snapshot now, between loads; 409 if the cut is  (token)
                          not clean yet
    GET  /book/{symbol}   the book's levels, best first (for checks and reports)
    GET  /admin/stats     matches since the journal began, events awaiting the broker  (token)
    GET  /health          liveness: the process serves HTTP
    GET  /ready           readiness: 503 while the journal cannot write
    GET  /metrics         on METRICS_PORT

(token): needs ``Authorization: Bearer $ADMIN_TOKEN`` (matchlab.admin_auth).
"""

from __future__ import annotations

import asyncio
import logging
from time import perf_counter

import orjson
from aiohttp import web

from matchlab.admin_auth import admin_middleware
from matchlab.edge.fastlane import FastRoute
from matchlab.edge.guard import ConnectionGuard, EdgeMetrics, edge_middleware, queued_s, start_guarded
from matchlab.edge.limits import raise_descriptor_limit
from matchlab.edge.replies import Reply, json_reply, rejected
from matchlab.errors import QueueFullError
from matchlab.httpjson import (
    MAX_ORDER_BYTES,
    MAX_SEED_BYTES,
    json_response,
    read_json_body,
    rejection,
    start_metrics_site,
    to_response,
)
from matchlab.service import PRODUCER_FLUSH_S, SHUTDOWN_GRACE_S, serve_until_signalled
from matchlab.shard.config import EventsMode, ShardConfig
from matchlab.shard.engine import MatchingEngine
from matchlab.shard.event_modes import InProcessEvents, RelayedEvents
from matchlab.shard.idwindow import IdWindow
from matchlab.shard.looplag import LoopLagMonitor
from matchlab.shard.metrics import ShardMetrics
from matchlab.shard.orders import OrderRejected, parse_order, parse_seed
from matchlab.shard.pipeline import OrderConflict, OrderPipeline
from matchlab.shard.wal import WalError

log = logging.getLogger(__name__)
# An injected delay beyond this is no calibration of a 200 ms bar, just a stalled shard.
MAX_INJECTED_DELAY_MS = 1000.0



class ShardServer:
    """Wires config, engine, pipeline, events mode and metrics into a service."""

    def __init__(self, config: ShardConfig) -> None:
        self.config = config
        self.metrics = ShardMetrics(config.shard_id)
        self.engine = MatchingEngine(config.shard_id, config.symbols)
        self.events = events_mode(config, self.metrics)
        self.pipeline = OrderPipeline(
            self.engine, self.metrics, self.events, config.ring_buffer_size,
            ids=IdWindow(config.order_id_window_ids, config.order_id_window_s * 1000),
            snapshot_every=config.snapshot_every_records,
            segment_bytes=config.wal_size_mb * 1024 * 1024,
            match_delay_s=config.inject_match_delay_ms / 1000,
        )
        self.metrics.bind_state(self.engine.depth, self.engine.price_levels, self.pipeline.utilization)
        self._symbols = config.symbols
        self._runners: list[web.AppRunner] = []
        self._serving = False
        self.loop_lag = LoopLagMonitor(self.metrics.loop_lag)
        edge_metrics = EdgeMetrics("me", self.metrics.registry, {"shard": config.shard_id})
        # POST /orders in the edge's fast lane (HTTP_FAST_LANE), deciding through the same place_order.
        fast = FastRoute(self.place_order, _as_is, MAX_ORDER_BYTES) if config.edge.fast_lane else None
        self.guard = ConnectionGuard(config.edge, edge_metrics, fast)

    # -- handlers --------------------------------------------------------

    async def post_order(self, request: web.Request) -> web.Response:
        received_at = perf_counter()
        body = await read_json_body(request, MAX_ORDER_BYTES)
        if isinstance(body, Reply):
            return to_response(body)
        return to_response(await self.place_order(body, received_at, queued_s(request)))

    async def place_order(self, body: bytes, received_at: float, _queued_s: float) -> Reply:
        """One order's outcome, from a body that passed the transport checks (aiohttp's path and the fast lane)."""
        try:
            order = parse_order(body, self._symbols)
        except OrderRejected as exc:
            return rejected(400, exc.reason, exc.order_id)
        self.metrics.validation.observe(perf_counter() - received_at)
        try:
            ack_ms, duplicate = await self.pipeline.submit_order(order, received_at)
        except QueueFullError as exc:
            return rejected(503, str(exc), order.orderId)
        except WalError as exc:
            return rejected(503, journal_reason(exc), order.orderId)
        except OrderConflict as exc:
            return rejected(409, str(exc), order.orderId)
        reply = {"status": "ACCEPTED", "orderId": order.orderId, "shardId": self.config.shard_id, "timestamp": ack_ms}
        if duplicate:
            reply["duplicate"] = True
        return json_reply(200, reply)

    async def post_seed(self, request: web.Request) -> web.Response:
        body = await read_json_body(request, MAX_SEED_BYTES)
        if isinstance(body, Reply):
            return to_response(body)
        try:
            orders = parse_seed(body, self._symbols)
        except OrderRejected as exc:
            return rejection(400, exc.reason, exc.order_id)
        try:
            await self.pipeline.submit_seed(orders)
        except WalError as exc:
            return rejection(503, journal_reason(exc))
        return json_response(200, {"seeded": len(orders)})

    async def post_reset(self, _request: web.Request) -> web.Response:
        try:
            await self.pipeline.submit_reset()
        except WalError as exc:
            return rejection(503, journal_reason(exc))
        return json_response(200, {"status": "RESET", "shardId": self.config.shard_id})

    async def post_inject(self, request: web.Request) -> web.Response:
        """Set the injected match delay while running (the harness's power check: a known effect in one arm)."""
        body = await read_json_body(request, MAX_ORDER_BYTES)
        if isinstance(body, Reply):
            return to_response(body)
        try:
            delay_ms = float(orjson.loads(body)["matchDelayMs"])
        except (ValueError, KeyError, TypeError):
            return rejection(400, 'send {"matchDelayMs": <milliseconds, 0 to 1000>}')
        if not 0 <= delay_ms <= MAX_INJECTED_DELAY_MS:
            return rejection(400, f"matchDelayMs must lie in 0..{MAX_INJECTED_DELAY_MS}, got {delay_ms:g}")
        if delay_ms:
            log.warning("injected match delay set to %g ms: orders wait that long before matching (a calibration "
                        "effect; never in a real deployment)", delay_ms)
        self.pipeline.match_delay_s = delay_ms / 1000
        return json_response(200, {"matchDelayMs": delay_ms, "shardId": self.config.shard_id})

    async def post_snapshot(self, _request: web.Request) -> web.Response:
        if not await self.pipeline.snapshot_now():
            return rejection(409, "not at a clean cut (a seed, reset or journal write in flight): try again")
        return json_response(200, {"lastSnapshot": self.pipeline.last_snapshot_cut, "shardId": self.config.shard_id})

    async def get_book(self, request: web.Request) -> web.Response:
        book = self.engine.books.get(request.match_info["symbol"])
        if book is None:
            return rejection(404, f"symbol: {request.match_info['symbol']!r} is not traded on this shard")
        return json_response(200, book.snapshot())

    async def get_stats(self, _request: web.Request) -> web.Response:
        """Totals that survive restarts (they are replayed), for reconciling the event topics."""
        return json_response(200, {
            "shardId": self.config.shard_id,
            "matches": self.engine.match_count,
            **self.events.stats(),
            "journalRecords": self.pipeline.next_index,
            "lastSnapshot": self.pipeline.last_snapshot_cut,
            "snapshotEvery": self.pipeline.snapshot_every,
            "orderIdWindow": len(self.pipeline.ids),
        })

    async def get_health(self, _request: web.Request) -> web.Response:
        return json_response(200, {"status": "UP", "shardId": self.config.shard_id})

    async def get_ready(self, _request: web.Request) -> web.Response:
        """Ready to take orders: started, not stopping, and the journal can write."""
        shard = self.config.shard_id
        if not self._serving:
            return json_response(503, {"status": "NOT_READY", "shardId": shard, "reason": "starting or stopping"})
        if not self.pipeline.journal_ok:
            reason = f"journal cannot write: {self.pipeline.journal_error}"
            return json_response(503, {"status": "NOT_READY", "shardId": shard, "reason": reason})
        return json_response(200, {"status": "READY", "shardId": shard})

    # -- lifecycle ---------------------------------------------------------

    def api_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_SEED_BYTES,
                              middlewares=[edge_middleware(self.guard), admin_middleware(self.config.admin_token)])
        app.router.add_post("/orders", self.post_order)
        app.router.add_post("/seed", self.post_seed)
        app.router.add_post("/admin/reset", self.post_reset)
        app.router.add_post("/admin/inject", self.post_inject)
        app.router.add_post("/admin/snapshot", self.post_snapshot)
        app.router.add_get("/book/{symbol}", self.get_book)
        app.router.add_get("/admin/stats", self.get_stats)
        app.router.add_get("/health", self.get_health)
        app.router.add_get("/ready", self.get_ready)
        return app

    async def start(self) -> None:
        started = perf_counter()
        replayed = await self.pipeline.start(self.config.wal_path, self.config.fsync)
        self.loop_lag.start()
        raise_descriptor_limit(log, self.config.edge.max_connections)
        self._runners.append(await start_metrics_site(self.metrics.registry, self.config.bind_host,
                                                      self.config.metrics_port, self.get_health, SHUTDOWN_GRACE_S))
        # The API last (stop() relies on it), behind the edge guard.
        self._runners.append(await start_guarded(self.api_app(), self.config.bind_host, self.config.http_port,
                                                 self.guard, SHUTDOWN_GRACE_S))
        self._serving = True
        log.info(
            "shard %s up on %s:%d (metrics %d), %d journal records replayed in %.3fs, book depth bid=%d ask=%d",
            self.config.shard_id, self.config.bind_host, self.config.http_port, self.config.metrics_port,
            replayed, perf_counter() - started, self.engine.depth("bid"), self.engine.depth("ask"),
        )
        if self.config.inject_match_delay_ms:
            log.warning("INJECT_MATCH_DELAY_MS=%d: every order waits %d ms before matching (an injected regression, "
                        "for comparing runs; never in a real deployment)", self.config.inject_match_delay_ms,
                        self.config.inject_match_delay_ms)
        if self.config.events_mode is EventsMode.INPROCESS:
            log.warning("EVENTS_MODE=inprocess: the Kafka producer runs in the matching process (the coupled "
                        "design, for comparisons; the relay is the default)")
        elif self.config.kafka_bootstrap:
            log.info("events leave through the relay (matchlab.relay) tailing %s", self.pipeline.layout.directory)
        if self.config.admin_token is None:
            log.warning("ADMIN_TOKEN is not set: /admin/* and /seed refuse every request (401)")

    async def stop(self) -> None:
        """Stop accepting, finish in-flight requests, drain, flush journal and producer."""
        self._serving = False
        api = self._runners[-1:] if self._runners else []
        for runner in api:  # the API first: no new orders
            await runner.cleanup()
        try:
            await asyncio.wait_for(self.pipeline.drain(), SHUTDOWN_GRACE_S)
        except (TimeoutError, WalError) as exc:  # a journal that cannot write must not hold the stop up
            log.warning("stopping without a full drain: %s", journal_reason(exc) if isinstance(exc, WalError) else "timed out")
        undelivered = await self.events.flush(PRODUCER_FLUSH_S)
        try:  # journals a snapshot (and with the in-process publisher the delivery mark its flush reached)
            await asyncio.wait_for(self.pipeline.close(), SHUTDOWN_GRACE_S)
        except TimeoutError:
            log.warning("journal not closed within %.0fs", SHUTDOWN_GRACE_S)
        for runner in self._runners[:-1]:
            await runner.cleanup()
        await self.loop_lag.stop()
        log.info("shard %s stopped (%d events undelivered)", self.config.shard_id, undelivered)


def events_mode(config: ShardConfig, metrics: ShardMetrics) -> RelayedEvents | InProcessEvents:
    """The configured events mode; only the in-process one loads the Kafka client into this process."""
    if config.events_mode is EventsMode.RELAY:
        return RelayedEvents(relay=bool(config.kafka_bootstrap))
    from matchlab.shard import events  # confluent-kafka: never imported with the relay

    if not config.kafka_bootstrap:
        return InProcessEvents(events.NullPublisher())
    return InProcessEvents(events.EventPublisher(
        config.kafka_bootstrap, f"me-shard-{config.shard_id}", config.event_linger_ms, config.event_partition,
        errors=metrics.publish_errors, publish_seconds=metrics.publish,
    ), config.events_outbox_bound)


def _as_is(reply: Reply, _received_at: float) -> Reply:
    """The shard records nothing for a request refused before its body is parsed (as on aiohttp's path)."""
    return reply


def journal_reason(exc: WalError) -> str:
    return f"journal unavailable: {exc.strerror or exc}"


async def serve(config: ShardConfig) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    await serve_until_signalled(ShardServer(config), log)
