"""The gateway's HTTP side: route by symbol, forward unchanged, pass the reply through.

Routes:
    POST /orders            -> owning shard's /orders (400 unknown symbol, 502 unreachable, 504 timeout,
                               503 + Retry-After when MAX_INFLIGHT_PER_SHARD orders are already in flight to it,
                               or the order already queued SHED_QUEUE_WAIT_MS inside the gateway)
    POST /seed/{shardId}    -> that shard's /seed (404 unknown shard); needs the admin token, which
                               the gateway checks and sends on to the shard
    GET  /health
    GET  /metrics           on METRICS_PORT

Each shard has its own keep-alive connection pool (``matchlab.http1``, the
lean client the HTTP bake-off chose), so a dead or stalled shard exhausts
only its own pool and never delays orders for the others.
Client connections pass through the edge guard (matchlab.edge): header, body
and idle timeouts, and a cap on open connections.
"""

from __future__ import annotations

import logging
from time import perf_counter

import msgspec
from aiohttp import web

from matchlab.admin_auth import admin_middleware, bearer
from matchlab.edge.fastlane import FastRoute
from matchlab.edge.guard import ConnectionGuard, EdgeMetrics, edge_middleware, queued_s, start_guarded
from matchlab.edge.limits import raise_descriptor_limit
from matchlab.edge.replies import OCTET_STREAM, Reply, rejected
from matchlab.gateway.config import GatewayConfig
from matchlab.gateway.metrics import GatewayMetrics
from matchlab.gateway.workers import Supervisor, die_with_supervisor
from matchlab.http1 import HttpPool, UpstreamError, UpstreamTimeout
from matchlab.httpjson import (
    MAX_ORDER_BYTES,
    MAX_SEED_BYTES,
    json_response,
    read_json_body,
    start_metrics_site,
    to_response,
)
from matchlab.service import serve_until_signalled

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 2.0
REQUEST_TIMEOUT_S = 5.0
SEED_TIMEOUT_S = 120.0
POOL_SIZE_PER_SHARD = 512
SHUTDOWN_GRACE_S = 10.0


class _SymbolOnly(msgspec.Struct):
    """Decodes just the routing key; msgspec skips every other field unparsed."""

    symbol: str


_decode_symbol = msgspec.json.Decoder(_SymbolOnly).decode


class GatewayServer:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.metrics = GatewayMetrics(sorted(config.shard_urls))
        self._owner = config.symbol_owner
        self._pools = {s: HttpPool(u, POOL_SIZE_PER_SHARD, CONNECT_TIMEOUT_S) for s, u in config.shard_urls.items()}
        self._order_head = {s: pool.request_head("/orders") for s, pool in self._pools.items()}
        # The middleware has checked the caller's token; the shard checks the same one again.
        self._seed_head = {s: pool.request_head("/seed", bearer(config.admin_token)) for s, pool in self._pools.items()}
        self._runners: list[web.AppRunner] = []
        # POST /orders in the edge's fast lane (HTTP_FAST_LANE), deciding through the same place_order.
        fast = FastRoute(self.place_order, self._unroutable, MAX_ORDER_BYTES) if config.edge.fast_lane else None
        self.guard = ConnectionGuard(config.edge, EdgeMetrics("gw", self.metrics.registry), fast)
        self._inflight = dict.fromkeys(config.shard_urls, 0)
        self._shed_headers = (("Retry-After", str(config.edge.retry_after_s)),)

    async def _forward(self, shard: str, head: bytes, body: bytes, started: float,
                       timeout_s: float = REQUEST_TIMEOUT_S) -> Reply:
        try:
            upstream = await self._pools[shard].post(head, body, timeout_s)
            reply = Reply(upstream.status, upstream.body, upstream.content_type or OCTET_STREAM)
        except UpstreamTimeout:
            self.metrics.routing["timeout"].inc()
            reply = rejected(504, f"shard {shard!r} did not answer within {timeout_s:g}s")
        except UpstreamError as exc:
            self.metrics.routing["shard_unavailable"].inc()
            reply = rejected(502, f"shard {shard!r} unreachable: {exc}")
        self.metrics.observe(shard, reply.status, perf_counter() - started)
        return reply

    async def post_order(self, request: web.Request) -> web.Response:
        started = perf_counter()
        body = await read_json_body(request, MAX_ORDER_BYTES)
        if isinstance(body, Reply):
            return to_response(self._unroutable(body, started))
        return to_response(await self.place_order(body, started, queued_s(request)))

    async def place_order(self, body: bytes, started: float, queued: float) -> Reply:
        """Route and forward one order whose body passed the transport checks (aiohttp's path and the fast lane)."""
        try:
            symbol = _decode_symbol(body).symbol
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return self._unroutable(rejected(400, f"cannot route: {exc}"), started)
        except RecursionError:  # skipping an unknown field nested ~1,000 deep exhausts the decoder's depth limit
            return self._unroutable(rejected(400, "cannot route: JSON nested too deeply"), started)
        shard = self._owner.get(symbol)
        if shard is None:
            self.metrics.routing["unknown_symbol"].inc()
            return self._unroutable(rejected(400, f"symbol: unknown symbol {symbol!r} (no shard owns it)"), started)
        if self._inflight[shard] >= self.config.max_inflight_per_shard:
            return self._shed(shard, started, f"shard {shard!r} has {self.config.max_inflight_per_shard} orders in flight")
        if queued > self.config.shed_queue_wait_s:
            return self._shed(shard, started, f"the gateway is overloaded (queued {queued * 1000:.0f} ms)")
        self._inflight[shard] += 1
        try:
            return await self._forward(shard, self._order_head[shard], body, started)
        finally:
            self._inflight[shard] -= 1

    def _unroutable(self, reply: Reply, started: float) -> Reply:
        """A refusal before any shard is chosen, counted under shard "none"."""
        self.metrics.observe("none", reply.status, perf_counter() - started)
        return reply

    def _shed(self, shard: str, started: float, why: str) -> Reply:
        """Answer at once rather than queue: the shard has its fill, or the gateway itself is behind."""
        self.metrics.shed[shard].inc()
        self.metrics.observe(shard, 503, perf_counter() - started)
        refusal = rejected(503, f"{why}: retry later")
        return Reply(refusal.status, refusal.body, refusal.content_type, self._shed_headers)

    async def post_seed(self, request: web.Request) -> web.Response:
        started = perf_counter()
        shard = request.match_info["shard"]
        if shard not in self.config.shard_urls:
            return json_response(404, {"status": "REJECTED", "reason": f"unknown shard id {shard!r}"})
        body = await read_json_body(request, MAX_SEED_BYTES)
        if isinstance(body, Reply):
            return to_response(body)
        return to_response(await self._forward(shard, self._seed_head[shard], body, started, SEED_TIMEOUT_S))

    async def get_health(self, _request: web.Request) -> web.Response:
        return json_response(200, {"status": "UP", "component": "edge-gateway"})

    async def start(self) -> None:
        api = web.Application(client_max_size=MAX_SEED_BYTES,
                              middlewares=[edge_middleware(self.guard), admin_middleware(self.config.admin_token)])
        api.router.add_post("/orders", self.post_order)
        api.router.add_post("/seed/{shard}", self.post_seed)
        api.router.add_get("/health", self.get_health)
        raise_descriptor_limit(log, self.config.edge.max_connections)
        self._runners.append(await start_metrics_site(self.metrics.registry, self.config.bind_host,
                                                      self.config.metrics_port, self.get_health, SHUTDOWN_GRACE_S))
        self._runners.append(await start_guarded(api, self.config.bind_host, self.config.http_port, self.guard,
                                                 SHUTDOWN_GRACE_S, reuse_port=self.config.worker_index is not None))
        routes = ", ".join(f"{s}={u}" for s, u in sorted(self.config.shard_urls.items()))
        log.info("edge gateway up on %s:%d (metrics %d) -> %s", self.config.bind_host, self.config.http_port,
                 self.config.metrics_port, routes)
        if self.config.admin_token is None:
            log.warning("ADMIN_TOKEN is not set: /seed/{shardId} refuses every request (401)")

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish, close the pools."""
        for runner in reversed(self._runners):
            await runner.cleanup()
        for pool in self._pools.values():
            pool.close()
        log.info("edge gateway stopped")


async def serve(config: GatewayConfig) -> int:
    """Run until SIGTERM or SIGINT, then shut down gracefully; with GATEWAY_WORKERS > 1, supervise that many."""
    if config.workers > 1 and config.worker_index is None:
        return await Supervisor(config).run()
    if config.worker_index is not None:
        die_with_supervisor()
    await serve_until_signalled(GatewayServer(config), log)
    return 0
