"""Counters and histograms written by one thread (a service's event loop): plain numbers, exported at scrape.

prometheus_client takes a lock on every ``inc``/``observe`` and scans a
histogram's bounds linearly; on the order path of the shard and the gateway
that is several microseconds per order, for a guarantee (many writer
threads) neither needs: every observation there happens on the event loop.
These keep plain Python numbers and expose the same families (names,
labels, cumulative buckets, ``_sum``/``_count``) when Prometheus scrapes.
The scrape runs on the same loop, so it always sees a consistent copy.

They also write their own text for a scrape (``text``), with every line's
name and labels formatted once, when a child is bound: prometheus_client
formats each sample's labels and value on every scrape (~5 ms for a shard's
~700 samples), and a shard under a 0.2-CPU budget pays that out of its quota,
holding its loop ~30-50 ms every scrape (``matchlab.exposition``).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

INF = float("inf")


def _escape_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')


def _sample_prefix(name: str, labels: dict[str, str]) -> str:
    """``name{label="value",...} `` as prometheus_client writes it (label names sorted)."""
    if not labels:
        return f"{name} "
    return name + "{" + ",".join(f'{k}="{_escape_value(v)}"' for k, v in sorted(labels.items())) + "} "


def _go_float(value: float) -> str:
    """``floatToGoString``, with a fast path for the small whole counts most samples are."""
    if type(value) is int and 0 <= value < 1_000_000:
        return f"{value}.0"
    return floatToGoString(value)


class _Family:
    """Children by label values, created on first use (bind them up front to export zeros from the start)."""

    kind = ""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        self._children: dict[tuple[str, ...], object] = {}
        self._prefixes: dict[tuple[str, ...], object] = {}  # per child: its lines' names and labels, formatted
        registry.register(self)

    def labels(self, **values: str):
        key = tuple(values[n] for n in self.labelnames)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._new_child()
            self._prefixes[key] = self._prefix(dict(zip(self.labelnames, key)))
        return child

    def _new_child(self):
        raise NotImplementedError

    def _prefix(self, labels: dict[str, str]):
        raise NotImplementedError

    def _header(self, name: str) -> str:
        doc = self.documentation.replace("\\", r"\\").replace("\n", r"\n")
        return f"# HELP {name} {doc}\n# TYPE {name} {self.kind}\n"

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
    kind = "counter"

    def _new_child(self) -> _CounterChild:
        return _CounterChild()

    def _exposed_name(self) -> str:
        return self.name.removesuffix("_total") + "_total"  # as prometheus_client writes a counter's samples

    def _prefix(self, labels: dict[str, str]) -> str:
        return _sample_prefix(self._exposed_name(), labels)

    def text(self) -> str:
        """This family's lines in the text exposition format, as ``generate_latest`` writes them."""
        out = [self._header(self._exposed_name())]
        for key, child in self._children.items():
            out.append(f"{self._prefixes[key]}{_go_float(child.value)}\n")
        return "".join(out)

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
    kind = "histogram"

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry,
                 buckets: Sequence[float]) -> None:
        self.bounds = sorted(b for b in buckets if b != INF)
        super().__init__(name, documentation, labelnames, registry)

    def _new_child(self) -> _HistogramChild:
        return _HistogramChild(self.bounds)

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def _prefix(self, labels: dict[str, str]) -> tuple[list[str], str, str]:
        uppers = [*(floatToGoString(b) for b in self.bounds), "+Inf"]
        buckets = [_sample_prefix(f"{self.name}_bucket", {**labels, "le": u}) for u in uppers]
        return buckets, _sample_prefix(f"{self.name}_count", labels), _sample_prefix(f"{self.name}_sum", labels)

    def text(self) -> str:
        """This family's lines in the text exposition format, as ``generate_latest`` writes them."""
        out = [self._header(self.name)]
        for key, child in self._children.items():
            buckets, count, total = self._prefixes[key]
            cumulative = 0
            for prefix, n in zip(buckets, child.counts):
                cumulative += n
                out.append(f"{prefix}{_go_float(cumulative)}\n")
            out.append(f"{count}{_go_float(cumulative)}\n{total}{_go_float(child.sum)}\n")
        return "".join(out)

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
