"""Counters and histograms written by one thread (a service's event loop): plain numbers, exported at scrape.

prometheus_client takes a lock on every ``inc``/``observe`` and scans a
histogram's bounds linearly; on the order path of the shard and the gateway
that is several microseconds per order, for a guarantee (many writer
threads) neither needs: every observation there happens on the event loop.
These keep plain Python numbers and expose the same families (names,
labels, cumulative buckets, ``_sum``/``_count``) when Prometheus scrapes.
The scrape runs on the same loop, so it always sees a consistent copy.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

INF = float("inf")


class _Family:
    """Children by label values, created on first use (bind them up front to export zeros from the start)."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        self._children: dict[tuple[str, ...], object] = {}
        registry.register(self)

    def labels(self, **values: str):
        key = tuple(values[n] for n in self.labelnames)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._new_child()
        return child

    def _new_child(self):
        raise NotImplementedError

    def describe(self) -> list:
        return [self._family()]

    def _family(self):
        raise NotImplementedError


class _CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class LoopCounter(_Family):
    def _new_child(self) -> _CounterChild:
        return _CounterChild()

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = self._family()
        for key, child in self._children.items():
            family.add_metric(list(key), child.value)
        yield family


class _HistogramChild:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: list[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound counts in that bound's bucket (le is inclusive).
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


class LoopHistogram(_Family):
    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry,
                 buckets: Sequence[float]) -> None:
        self.bounds = sorted(b for b in buckets if b != INF)
        super().__init__(name, documentation, labelnames, registry)

    def _new_child(self) -> _HistogramChild:
        return _HistogramChild(self.bounds)

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = self._family()
        uppers = [*(floatToGoString(b) for b in self.bounds), "+Inf"]  # as prometheus_client writes them
        for key, child in self._children.items():
            cumulative, buckets = 0, []
            for upper, count in zip(uppers, child.counts):
                cumulative += count
                buckets.append((upper, cumulative))
            family.add_metric(list(key), buckets, child.sum)
        yield family
