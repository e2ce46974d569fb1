"""The shard's Prometheus metrics, exact names and buckets of docs/internals/design.md §3.5.

Each histogram carries every bound the design lists plus finer
sub-millisecond bounds, so fast percentiles stay resolvable. Children are
bound to their labels once: ``.labels()`` per observation would double the
cost on the hot path. Gauges that describe state (book depth, ring fill) are
computed when scraped, costing nothing per order.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import CounterMetricFamily

from matchlab.buckets import MATCH_BUCKETS, SYNC_BUCKETS
from matchlab.httpjson import new_registry
from matchlab.loopmetrics import LoopCounter, LoopHistogram

# Required bounds (docs/internals/design.md §3.5) merged with finer ones.
FAST_BUCKETS = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.005, 0.01)
ALGO_BUCKETS = FAST_BUCKETS + (0.05,)
WAL_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)


class ShardMetrics:
    """Bound metric children for one shard; every one written on the event loop only (``loopmetrics``)."""

    def __init__(self, shard_id: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or new_registry()
        r = self.registry

        def hist(name: str, doc: str, buckets: tuple[float, ...]):
            return LoopHistogram(name, doc, ["shard"], r, buckets).labels(shard=shard_id)

        def counter(name: str, doc: str):
            return LoopCounter(name, doc, ["shard"], r).labels(shard=shard_id)

        self.match_duration = hist(
            "me_match_duration_seconds", "HTTP receipt to match result, per order (includes the durable journal wait)",
            MATCH_BUCKETS,
        )
        self.validation = hist(
            "me_order_validation_duration_seconds", "Decoding and validating an order", FAST_BUCKETS
        )
        self.insertion = hist(
            "me_orderbook_insertion_duration_seconds", "Resting an order's remainder in the book", FAST_BUCKETS
        )
        self.algorithm = hist(
            "me_matching_algorithm_duration_seconds", "Matching an order against the contra side", ALGO_BUCKETS
        )
        self.wal_append = hist(
            "me_wal_append_duration_seconds", "Journal append until the fsync covering it completed", WAL_BUCKETS
        )
        self.wal_sync = hist(
            "me_wal_sync_duration_seconds", "One journal batch's write and fsync, wall time (the disk, and any wait for a core)", SYNC_BUCKETS
        )
        self.wal_write = hist("me_wal_write_duration_seconds", "Of a journal batch's sync: the write", SYNC_BUCKETS)
        self.wal_fsync = hist("me_wal_fsync_duration_seconds", "Of a journal batch's sync: the fsync", SYNC_BUCKETS)
        self.wal_handback = hist(
            "me_wal_handback_duration_seconds",
            "Committer thread done -> the event loop took the batch back (waiting for the GIL and a wake-up); "
            "commits the loop ran itself count as 0", SYNC_BUCKETS,
        )
        self.publish = hist(
            "me_event_publish_duration_seconds",
            "Handing one event on: to the journal for the relay (EVENTS_MODE=relay), or to the in-process Kafka "
            "producer (EVENTS_MODE=inprocess)", FAST_BUCKETS,
        )
        self.snapshot_capture = hist(
            "me_snapshot_capture_duration_seconds",
            "Event-loop time a snapshot took (the books and the id window's newest ids; the rest runs in a thread)",
            SYNC_BUCKETS,
        )
        self.loop_lag = hist(
            "me_loop_lag_seconds",
            "How much later than asked the event loop ran a 100 ms timer (stalls: long callbacks, collections)",
            SYNC_BUCKETS,
        )
        self.matches = counter("me_matches_total", "Fills executed")
        received = LoopCounter("me_orders_received_total", "Orders accepted", ["shard", "side"], r)
        self.received = {side: received.labels(shard=shard_id, side=side) for side in ("BUY", "SELL")}
        self.publish_errors = counter(
            "me_event_publish_errors_total",
            "Events the in-process producer failed to deliver (EVENTS_MODE=relay: the relay counts its own, "
            "relay_publish_errors_total)",
        )
        self.duplicates = counter(
            "me_orders_duplicate_total", "Repeated orderIds answered with the original acknowledgement"
        )
        self.journal_errors = counter(
            "me_journal_write_errors_total", "Journal writes or fsyncs that failed (their groups got 503)"
        )
        self._depth = Gauge("me_orderbook_depth", "Resting orders", ["shard", "side"], registry=r)
        self._levels = Gauge("me_orderbook_price_levels", "Price levels", ["shard", "side"], registry=r)
        self._ring = Gauge(
            "me_ringbuffer_utilization_ratio", "Accepted orders not yet matched / capacity", ["shard"], registry=r
        )
        self._shard = shard_id
        self._commits: Callable[[], dict[str, int]] = dict
        r.register(_CommitCounts(shard_id, lambda: self._commits()))

    def observe_commit(self, batch, handback_s: float) -> None:
        """One durable journal batch: its write + fsync, the two apart, and its hand-back to the loop."""
        self.wal_sync.observe(batch.sync_s)
        self.wal_write.observe(batch.write_s)
        self.wal_fsync.observe(batch.fsync_s)
        self.wal_handback.observe(handback_s)

    def bind_commits(self, counts: Callable[[], dict[str, int]]) -> None:
        """Journal commits by who ran them (``inline``: the event loop, ``thread``: the committer), read at scrape."""
        self._commits = counts

    def bind_state(
        self,
        depth: Callable[[str], int],
        levels: Callable[[str], int],
        ring_utilization: Callable[[], float],
    ) -> None:
        """Read book and ring state at scrape time instead of on every order."""
        for side in ("bid", "ask"):
            self._depth.labels(shard=self._shard, side=side).set_function(lambda s=side: depth(s))
            self._levels.labels(shard=self._shard, side=side).set_function(lambda s=side: levels(s))
        self._ring.labels(shard=self._shard).set_function(ring_utilization)


class _CommitCounts:
    """``me_wal_commits_total{mode}``: the journal keeps the counts itself; exported when scraped."""

    def __init__(self, shard_id: str, counts: Callable[[], dict[str, int]]) -> None:
        self._shard, self._counts = shard_id, counts

    def describe(self) -> list:
        return [CounterMetricFamily("me_wal_commits", "Journal batches written and fsynced, by who ran the commit",
                                    labels=["shard", "mode"])]

    def collect(self):
        family = self.describe()[0]
        for mode, count in sorted(self._counts().items()):
            family.add_metric([self._shard, mode], count)
        yield family
