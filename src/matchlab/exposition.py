"""What a ``/metrics`` scrape answers, written at a cost a CPU-budgeted shard can afford.

A scrape runs on the service's event loop. prometheus_client's
``generate_latest`` formats every sample's name, labels and value each time:
~5 ms of CPU for a shard's ~700 samples (11 ms measured through HTTP), which
a shard under a 0.2-CPU budget pays out of its quota, holding its loop for
~30-55 ms every scrape. At ~1,000 orders/s that is past the gateway's
64-in-flight cap, so capacity steps shed orders in whichever second a scrape
landed in: noise in S1 that came from the harness, not from matching.

``ScrapeRegistry`` keeps the collectors that write their own text (the loop
metrics of ``matchlab.loopmetrics``, whose names and labels are formatted
once) apart from the rest; a scrape formats only the rest with
``generate_latest``. The text is the same either way
(``tests/unit/test_loopmetrics.py`` compares them line for line).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol, runtime_checkable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector


@runtime_checkable
class WritesOwnText(Protocol):
    def text(self) -> str: ...


class _Collectors:
    """What ``generate_latest`` needs of a registry: ``collect``."""

    def __init__(self, collectors: Iterable[Collector]) -> None:
        self._collectors = collectors

    def collect(self) -> Iterator:
        for collector in self._collectors:
            yield from collector.collect()


class ScrapeRegistry(CollectorRegistry):
    """A registry whose scrape text comes from ``exposition``: self-writing collectors apart from the rest."""

    def __init__(self) -> None:
        super().__init__(auto_describe=True)
        self._writers: list[WritesOwnText] = []
        self._others: list[Collector] = []

    def register(self, collector: Collector) -> None:
        super().register(collector)  # refuses duplicate names before either list takes it
        (self._writers if isinstance(collector, WritesOwnText) else self._others).append(collector)

    def unregister(self, collector: Collector) -> None:
        super().unregister(collector)
        for kept in (self._writers, self._others):
            if collector in kept:
                kept.remove(collector)

    def exposition(self) -> bytes:
        rest = generate_latest(_Collectors(list(self._others)))
        return rest + "".join(w.text() for w in list(self._writers)).encode()


def exposition(registry: CollectorRegistry) -> bytes:
    """The text exposition of ``registry``: the cheap way for a ``ScrapeRegistry``, else ``generate_latest``."""
    return registry.exposition() if isinstance(registry, ScrapeRegistry) else generate_latest(registry)
