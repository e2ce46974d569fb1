"""The gateway's metrics (docs/internals/design.md §3.5): requests, duration per shard, routing errors.

All written on the event loop only, so lock-free (``loopmetrics``).
"""

from __future__ import annotations

from matchlab.buckets import GATEWAY_BUCKETS
from matchlab.httpjson import new_registry
from matchlab.loopmetrics import LoopCounter, LoopHistogram

ROUTING_REASONS = ("unknown_symbol", "shard_unavailable", "timeout")
STATUS_CLASSES = ("2xx", "4xx", "5xx")


class GatewayMetrics:
    def __init__(self, shards: list[str]) -> None:
        self.registry = r = new_registry()
        requests = LoopCounter("gw_requests_total", "Requests by owning shard and status class", ["shard", "status"], r)
        duration = LoopHistogram("gw_request_duration_seconds", "Gateway receipt to reply, per shard", ["shard"], r,
                                 GATEWAY_BUCKETS)
        routing = LoopCounter("gw_routing_errors_total", "Requests that could not be routed", ["reason"], r)
        # Children bound once (and so exported from the start, at zero).
        labels = [*shards, "none"]
        self.requests = {(s, c): requests.labels(shard=s, status=c) for s in labels for c in STATUS_CLASSES}
        self.duration = {s: duration.labels(shard=s) for s in labels}
        self.routing = {reason: routing.labels(reason=reason) for reason in ROUTING_REASONS}
        shed = LoopCounter("gw_requests_shed_total", "Orders answered 503 at once: the shard had too many in flight",
                           ["shard"], r)
        self.shed = {s: shed.labels(shard=s) for s in shards}

    def observe(self, shard: str, status: int, seconds: float) -> None:
        status_class = "5xx" if status >= 500 else "4xx" if status >= 400 else "2xx"
        self.requests[(shard, status_class)].inc()
        self.duration[shard].observe(seconds)
