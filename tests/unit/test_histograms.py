"""Quantiles and their intervals from bucket vectors: the arithmetic every p99 verdict rests on."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from matchlab.buckets import MATCH_BUCKETS, MATCH_REQUIRED
from matchlab.observe.histograms import Buckets, quantile_rise, samples_needed


def bucketize(values: list[float], bounds=MATCH_BUCKETS) -> Buckets:
    edges = [*bounds, math.inf]
    counts = [sum(1 for v in values if v <= b) for b in edges]
    return Buckets.from_pairs(list(zip(edges, counts)))


def test_quantile_interpolates_like_histogram_quantile():
    b = Buckets.from_pairs([(0.001, 0), (0.002, 50), (0.004, 100), (math.inf, 100)])
    assert b.quantile(0.5) == pytest.approx(0.002)
    assert b.quantile(0.75) == pytest.approx(0.003)  # halfway through the 2-4 ms bucket
    assert b.quantile(0.99) == pytest.approx(0.00396)
    assert Buckets.from_pairs([(0.001, 0), (math.inf, 0)]).quantile(0.99) is None  # n = 0 is no data
    top = Buckets.from_pairs([(0.001, 0), (0.002, 1), (math.inf, 100)])
    assert top.quantile(0.99) == 0.002  # in the +Inf bucket: the highest finite bound, as Prometheus does


def test_bucket_vector_must_end_with_inf_and_is_kept_monotonic():
    with pytest.raises(ValueError):
        Buckets.from_pairs([(0.001, 1), (0.002, 2)])
    b = Buckets.from_pairs([(0.001, 5), (0.002, 4), (math.inf, 6)])  # a counter scraped a moment late
    assert b.counts == (5, 5, 6)


def test_the_fine_grid_keeps_the_required_bounds_and_is_3_percent_apart():
    assert set(MATCH_REQUIRED) <= set(MATCH_BUCKETS)
    fine = [b for b in MATCH_BUCKETS if 0.0005 <= b <= 0.04]
    assert max(hi / lo for lo, hi in itertools.pairwise(fine)) < 1.031


def test_interval_narrows_with_samples_and_contains_the_truth():
    rng = random.Random(7)
    small = bucketize([rng.lognormvariate(math.log(0.002), 0.4) for _ in range(500)])
    large = bucketize([rng.lognormvariate(math.log(0.002), 0.4) for _ in range(50_000)])
    true_p99 = math.exp(math.log(0.002) + 0.4 * 2.3263)
    for b in (small, large):
        lo, hi = b.interval(0.99)
        assert lo <= true_p99 <= hi
    assert (large.interval(0.99)[1] / large.interval(0.99)[0]) < (small.interval(0.99)[1] / small.interval(0.99)[0])


def test_rise_interval_separates_a_real_shift_from_noise():
    rng = random.Random(11)

    def window(scale: float, n: int) -> Buckets:
        return bucketize([scale * rng.lognormvariate(math.log(0.002), 0.35) for _ in range(n)])

    same = quantile_rise(window(1.0, 20_000), window(1.0, 20_000))
    assert same.low < 0 < same.high and same.half_width < 0.10  # enough samples to resolve 10 %
    coupled = quantile_rise(window(1.0, 3_000), window(1.6, 3_000))  # a matcher that waits: +60 %
    assert coupled.low > 0.10
    few = quantile_rise(window(1.0, 300), window(1.0, 300))
    assert few.half_width > 0.10  # too few samples: cannot resolve the bar either way
    need = samples_needed(few, 0.10, 0.03)
    assert need is not None and need > 300
    assert quantile_rise(window(1.0, 100), Buckets.from_pairs([(0.001, 0), (math.inf, 0)])) is None
