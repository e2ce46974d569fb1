"""The relay's Prometheus metrics (its own ``/metrics``, scraped as job ``event-relay``).

Lag is read when scraped: records the shard has made durable whose events
the broker has not confirmed (``relay_lag_records``), and the age of the
oldest such event (``relay_lag_seconds``, 0 when none waits). Publish
latency is produce to the broker's confirmation, linger included: seconds
in an outage, so its buckets reach far.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Gauge

from matchlab.buckets import geometric
from matchlab.httpjson import new_registry
from matchlab.loopmetrics import LoopCounter, LoopHistogram
from matchlab.topology import TOPICS

PUBLISH_BUCKETS = (0.0005, *geometric(0.001, 0.2, 1.25), 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class RelayMetrics:
    def __init__(self, shard_id: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or new_registry()
        self.shard = shard_id
        self.publish = LoopHistogram(
            "relay_publish_duration_seconds", "One event from produce() to the broker's confirmation",
            ["shard"], r, PUBLISH_BUCKETS,
        ).labels(shard=shard_id)
        events = LoopCounter("relay_events", "Events the broker confirmed", ["shard", "topic"], r)
        self.events = {topic: events.labels(shard=shard_id, topic=topic) for topic in TOPICS}
        self.errors = LoopCounter(
            "relay_publish_errors", "Deliveries that failed (the event is sent again)", ["shard"], r,
        ).labels(shard=shard_id)
        self._lag_records = Gauge("relay_lag_records", "Durable journal records whose events are not yet confirmed",
                                  ["shard"], registry=r)
        self._lag_seconds = Gauge("relay_lag_seconds", "Age of the oldest event not yet confirmed (0: none waits)",
                                  ["shard"], registry=r)

    def bind_lag(self, records: Callable[[], float], seconds: Callable[[], float]) -> None:
        self._lag_records.labels(shard=self.shard).set_function(records)
        self._lag_seconds.labels(shard=self.shard).set_function(seconds)
