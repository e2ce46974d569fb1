"""Block statistics of an interleaved comparison, and the looks' error-rate schedule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from matchlab.buckets import MATCH_BUCKETS
from matchlab.compare.blocks import Cells, block_rise, quantiles, signed_rank, units_from_arms
from matchlab.compare.sequential import LookSchedule, obrien_fleming_spent
from matchlab.compare.stats import Histogram, point_quantile
from matchlab.experiment.scrape_blocks import Block, BlockSeries

BOUNDS = [*MATCH_BUCKETS, math.inf]
CELLS = Cells.of(Histogram.from_cumulative(BOUNDS, range(len(BOUNDS))))


def block(rng: np.random.Generator, n: int = 1000, scale: float = 1.0, episode_sd: float = 0.3) -> np.ndarray:
    """One block's per-cell counts: latencies around 1 ms, the whole block slower or faster by an episode."""
    episode = math.exp(rng.normal(0, episode_sd))
    latencies = 0.001 * scale * episode * rng.lognormal(0, 0.5, n)
    return np.bincount(np.searchsorted(MATCH_BUCKETS, latencies), minlength=len(BOUNDS)).astype(float)


def arms(rng, cycles: int, per_arm: int, effect: float = 1.0, drift: float = 0.0, episode_sd: float = 0.3):
    """B0 T0 B1 ... Bk; ``drift``: latency grows by this share per arm, whatever the arm."""
    baselines, treated, t = [], [], 0
    for k in range(cycles + 1):
        baselines.append([block(rng, scale=1 + drift * t, episode_sd=episode_sd) for _ in range(per_arm)])
        t += 1
        if k < cycles:
            treated.append([block(rng, scale=(1 + drift * t) * effect, episode_sd=episode_sd) for _ in range(per_arm)])
            t += 1
    return baselines, treated


def test_the_quantile_of_a_row_is_the_histograms():
    rng = np.random.default_rng(1)
    counts = block(rng)
    hist = Histogram(CELLS.lower, CELLS.upper, counts)
    assert quantiles(CELLS, counts, 0.99)[0] == pytest.approx(point_quantile(hist, 0.99))
    assert math.isnan(quantiles(CELLS, np.zeros_like(counts), 0.99)[0])


def test_units_pair_each_treated_block_with_both_baselines_around_it():
    rng = np.random.default_rng(2)
    baselines, treated = arms(rng, cycles=3, per_arm=3)
    baselines[3] = baselines[3][:2]  # the last baseline cut short: its third unit goes, nothing shifts
    units = units_from_arms(baselines, treated)
    assert len(units) == 8 and [u.cycle for u in units] == [0, 0, 0, 1, 1, 1, 2, 2]
    assert units[4].before is baselines[1][1] and units[4].treated is treated[1][1] and units[4].after is baselines[2][1]
    with pytest.raises(ValueError, match="one baseline arm more"):
        units_from_arms(baselines[:3], treated)


def test_a_real_rise_is_inside_the_interval_and_no_rise_is_outside_it():
    rng = np.random.default_rng(3)
    rise = block_rise(CELLS, units_from_arms(*arms(rng, cycles=6, per_arm=3, effect=1.4)))
    assert rise.low < 0.4 < rise.high and rise.low > 0, rise
    assert rise.units == 18 and rise.cycles == 6 and rise.rank is not None and rise.rank.low > 0


def test_a_drift_hits_both_arms_and_cancels():
    # Latency grows by 2 % per arm, 25 % over the run: a baseline window followed by a treated one would read
    # about half of that as the effect. Pooling each unit's two baselines leaves a small bias toward the
    # slower one (a quantile of a mixture leans to its slower part): a few per cent here.
    rng = np.random.default_rng(4)
    rise = block_rise(CELLS, units_from_arms(*arms(rng, cycles=6, per_arm=3, drift=0.02, episode_sd=0.02)))
    assert abs(rise.estimate) < 0.05 and rise.half_width < 0.05, rise


def test_the_interval_covers_no_effect_about_as_often_as_it_says():
    # Shams of the whole procedure: nominal 95 % intervals over units cover a zero effect 85-90 % of the time
    # at 15-24 units (the percentile bootstrap of a tail quantile runs short: a resample cannot hold a block
    # heavier than the heaviest drawn; 300 trials each). Intervals that counted orders as independent cover
    # far less (episodes make whole blocks differ). The experiments' shams measure the resulting rate of
    # wrong decisions on the real stack.
    covered = 0
    trials = 80
    for seed in range(trials):
        rng = np.random.default_rng(100 + seed)
        rise = block_rise(CELLS, units_from_arms(*arms(rng, cycles=5, per_arm=3)), resamples=500)
        covered += rise.low <= 0 <= rise.high
    assert covered >= 0.8 * trials, covered


def test_the_rank_check_follows_the_shift_and_says_nothing_on_few_units():
    rng = np.random.default_rng(6)
    shifted = signed_rank(list(rng.normal(math.log(1.3), 0.1, 20)), 0.05)
    assert 0.15 < shifted.low and shifted.high > 0.3 and shifted.p_value < 0.001, shifted
    none = signed_rank(list(rng.normal(0, 0.1, 20)), 0.05)
    assert none.low < 0 < none.high and none.p_value > 0.05, none
    assert signed_rank([0.1, 0.2, float("nan"), 0.3], 0.05) is None


def test_looks_spend_little_early_and_at_most_the_error_rate_in_all():
    schedule = LookSchedule((2, 4, 6))
    levels = schedule.levels()
    assert sum(levels) == pytest.approx(0.05) and levels[0] < 0.001 < levels[1] < levels[2]
    assert LookSchedule((5,)).levels() == pytest.approx((0.05,))
    assert obrien_fleming_spent(1.0) == pytest.approx(0.05)
    assert schedule.level_after(4) == levels[1] and schedule.level_after(3) is None
    assert "cap 6 cycles" in schedule.describe()
    for bad in ((), (3, 2), (0, 2), (2, 2)):
        with pytest.raises(ValueError):
            LookSchedule(bad)


def test_what_an_arm_completes_after_its_load_stops_counts_in_its_last_block():
    """Orders a shard held back (waiting for its broker) complete between the arms: they are the arm's."""
    def block(start: float, slow: int) -> Block:  # 100 fast orders, ``slow`` slow ones
        return Block(start, start + 5, np.array([100.0, float(slow)]))

    # Arm 0 runs 0.5-14.6 s (guard block 0-5), arm 1 20.5-34.6 s (guard 20-25); 15-20 is between them.
    series = BlockSeries(None, [block(t, slow) for t, slow in ((0, 0), (5, 0), (10, 1), (15, 40), (20, 7), (25, 0),
                                                               (30, 0), (35, 9))], "test")
    arm0, arm1 = series.arms([(0.5, 14.6), (20.5, 34.6)], guard_s=2.0, tail_s=1.0)
    assert [c.tolist() for c in arm0] == [[100.0, 0.0], [200.0, 41.0]]  # the held-back 40 join its last block
    assert [c.tolist() for c in arm1] == [[100.0, 0.0], [100.0, 0.0]]  # not its guard's 7, nothing after the last
