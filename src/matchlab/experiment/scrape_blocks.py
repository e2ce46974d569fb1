"""Blocks of evidence from Prometheus: one histogram delta per scrape, and the scrape grid they fall on.

A histogram's raw samples (``metric_bucket{...}[range]``) hold its cumulative
bucket counts at every scrape; the difference between two consecutive
scrapes is a block: what the process observed between them. An arm of an
interleaved comparison is aligned to the target's scrape grid (``ScrapeGrid``)
so that its blocks are whole; a block that straddles an arm's edge is left
out, as is one across a counter reset (a restarted process).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from matchlab.compare.blocks import Cells
from matchlab.compare.stats import Histogram
from matchlab.observe.histograms import Buckets
from matchlab.observe.promql import PromClient

MATCH_HISTOGRAM = "me_match_duration_seconds"
# A block's edges come from the scrapes that bound it; an arm's edge may sit this close to one.
EDGE_TOLERANCE_S = 0.05


@dataclass(frozen=True)
class Block:
    start: float  # the scrape before (Unix seconds, Prometheus' timestamp)
    end: float  # this scrape
    counts: np.ndarray  # observations per cell between the two scrapes

    @property
    def n(self) -> int:
        return int(self.counts.sum())


@dataclass(frozen=True)
class BlockSeries:
    """Every block of one histogram over a window, with the cells they share and the query that read them."""

    cells: Cells | None
    blocks: list[Block]
    query: str

    def within(self, start: float, end: float) -> list[Block]:
        """The blocks wholly inside [start, end]."""
        return [b for b in self.blocks if b.start >= start - EDGE_TOLERANCE_S and b.end <= end + EDGE_TOLERANCE_S]

    def arms(self, spans: list[tuple[float, float]], guard_s: float, tail_s: float) -> list[list[np.ndarray]]:
        """Each arm's block counts, for arms run one after another (``spans``: when each started and when its load
        stopped, in order).

        An arm's blocks begin ``guard_s`` after it starts and end by ``tail_s`` after its load stops. What its
        process completes after that and before the next arm starts belongs to it too: an order held back (a
        shard that waits for its broker) is observed only when it finally completes, and counted nowhere (or in
        a block no other arm has) would hide the wait. Those blocks join the arm's last block; between arms that
        held nothing back they are empty.
        """
        out = []
        for i, (start, end) in enumerate(spans):
            own = self.within(start + guard_s, end + tail_s)
            if own and i + 1 < len(spans):
                late = self.within(own[-1].end, spans[i + 1][0])
                own[-1] = Block(own[-1].start, own[-1].end, own[-1].counts + sum(b.counts for b in late))
            out.append([b.counts for b in own])
        return out


def read_blocks(prom: PromClient, selector: str, start: float, end: float,
                metric: str = MATCH_HISTOGRAM) -> BlockSeries:
    """The histogram's per-scrape blocks between ``start`` and ``end`` (``selector``: e.g. ``shard="a"``)."""
    span = max(5, math.ceil(end - start))
    query = f"{metric}_bucket{{{selector}}}[{span}s]"
    text = f"{query} @ {end:.3f} (raw samples: one block per pair of consecutive scrapes)"
    by_le: dict[float, dict[float, float]] = {}
    for series in prom.query_matrix(query, at=end):
        le = float(series.labels.get("le", "nan"))
        if math.isnan(le):
            continue
        points = by_le.setdefault(le, {})
        for t, v in series.points:
            points[t] = points.get(t, 0.0) + v  # several series of one shard (e.g. label changes) add up
    if not by_le or not any(math.isinf(le) for le in by_le):
        return BlockSeries(None, [], text)
    bounds = sorted(by_le)
    times = sorted(set.intersection(*(set(p) for p in by_le.values())))
    cumulative = np.array([[by_le[le][t] for le in bounds] for t in times])
    cells = Cells.of(Histogram.from_cumulative(bounds, range(len(bounds))))
    per_cell = np.diff(np.concatenate([np.zeros((len(times), 1)), cumulative], axis=1), axis=1)
    blocks = []
    for i in range(1, len(times)):
        delta = per_cell[i] - per_cell[i - 1]
        if (delta < 0).any():  # a counter reset: the process restarted within this block
            continue
        blocks.append(Block(times[i - 1], times[i], delta))
    return BlockSeries(cells, blocks, text)


def as_buckets(cells: Cells, counts: np.ndarray) -> Buckets:
    """Per-cell counts (pooled blocks) as a cumulative bucket vector: what a verdict keeps as evidence and a
    comparison of runs reads back."""
    bounds = [*(float(u) for u in cells.upper[:-1]), math.inf]  # the last cell is the +Inf bucket
    return Buckets.from_pairs(list(zip(bounds, np.cumsum(counts).tolist())))


@dataclass(frozen=True)
class ScrapeGrid:
    """When Prometheus scrapes one target: every ``interval_s`` from ``anchor`` (a scrape it took)."""

    anchor: float
    interval_s: float

    def next_after(self, t: float, offset: float = 0.0) -> float:
        """The first grid time + ``offset`` that is later than ``t``."""
        k = math.floor((t - offset - self.anchor) / self.interval_s) + 1
        return self.anchor + k * self.interval_s + offset


def scrape_grid(prom: PromClient, labels: dict[str, str]) -> ScrapeGrid | None:
    """The scrape grid of the first active target whose labels include ``labels``; None if none has been
    scraped yet. Prometheus scrapes a target at a fixed offset within its interval."""
    for target in prom.targets():
        if all(target["labels"].get(k) == v for k, v in labels.items()) and target.get("lastScrape"):
            last = datetime.fromisoformat(target["lastScrape"]).timestamp()
            if last <= 0:
                continue
            return ScrapeGrid(last, _seconds(target.get("scrapeInterval", "5s")))
    return None


def _seconds(duration: str) -> float:
    """A Prometheus duration such as "5s", "1m" or "500ms", in seconds."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for suffix in ("ms", "s", "m", "h"):
        if duration.endswith(suffix):
            return float(duration[: -len(suffix)]) * units[suffix]
    return float(duration)
