"""Reading one family off a /metrics page: the line filter must give what a parse of the whole page gives."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from matchlab.promtext import counter_total, families, histogram_buckets


@pytest.fixture
def page() -> str:
    reg = CollectorRegistry()
    matches = Counter("me_matches", "fills", ["shard"], registry=reg)
    # Families sharing the prefix: they must neither leak into me_matches nor be lost themselves.
    lookalike = Counter("me_matches_rejected", "lookalike", ["shard"], registry=reg)
    hist = Histogram("me_match_duration_seconds", "match", ["shard"], buckets=(0.001, 0.01, 0.1), registry=reg)
    longer = Histogram("me_match_duration_seconds_extra", "lookalike", buckets=(0.5,), registry=reg)
    for shard, n in (("a", 3), ("b", 4)):
        matches.labels(shard).inc(n)
        lookalike.labels(shard).inc(100)
        for v in (0.0005, 0.005, 0.05, 5.0)[:n]:
            hist.labels(shard).observe(v)
    longer.observe(0.2)
    return generate_latest(reg).decode()


def whole_page(text: str, name: str) -> dict[str, float]:
    return {f"{s.name}{sorted(s.labels.items())}": s.value
            for f in text_string_to_metric_families(text) if f.name == name for s in f.samples}


@pytest.mark.parametrize("name", ["me_matches", "me_matches_rejected", "me_match_duration_seconds",
                                  "me_match_duration_seconds_extra", "absent"])
def test_a_family_read_from_its_lines_is_the_family_read_from_the_whole_page(page, name):
    filtered = {f"{s.name}{sorted(s.labels.items())}": s.value for f in families(page, name) for s in f.samples}
    assert filtered == whole_page(page, name)
    assert bool(filtered) is (name != "absent")


def test_counters_and_buckets_sum_over_label_sets_and_ignore_lookalikes(page):
    assert counter_total(page, "me_matches") == 7
    assert counter_total(page, "me_matches", shard="b") == 4
    assert counter_total(page, "me_matches_rejected") == 200
    assert histogram_buckets(page, "me_match_duration_seconds") == {0.001: 2, 0.01: 4, 0.1: 6, float("inf"): 7}
