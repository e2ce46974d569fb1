"""Fill forecasts: the open-loop window's order rate from the flow's own future fills."""

from __future__ import annotations

import pytest

from matchlab.loadgen.fill_forecast import FillForecast, orders_due, seeds_for
from matchlab.loadgen.flow import STATIONARY, OrderFlow, OrderMix
from matchlab.loadgen.match_rate import AdaptiveRateProfile, MatchRateController
from matchlab.topology import SHARD_SYMBOLS

ABC = [s for shard in "abc" for s in SHARD_SYMBOLS[shard]]
FRESH = {"a": (500, 50), "b": (500, 50), "c": (500, 50)}


def forecast(seed: int = 3, symbols=ABC, mix: OrderMix = STATIONARY) -> FillForecast:
    return FillForecast(OrderFlow(symbols, mix, seed=seed, id_prefix="t-"), seeds_for(symbols, SHARD_SYMBOLS, FRESH))


def test_the_window_rate_is_the_fewest_orders_whose_fills_reach_the_target():
    f = forecast()
    after, seconds = 1620, 100.0
    rate, fills = f.order_rate_for(5040, after, seconds)
    count = round(rate * seconds)
    want = 5040 / 60 * seconds
    base = f.fills_of_first(after)
    assert f.fills_of_first(after + count) - base >= want > f.fills_of_first(after + count - 1) - base
    assert fills == pytest.approx(f.fills_per_order(after, count))
    # This seed's warm-up fills more than its window: a rate fixed from the warm-up would offer 4,760 matches/min,
    # 5.5 % under the 5,040 wanted and all but the whole margin over the 4,750 bar.
    warmup = f.fills_of_first(after) / after
    assert 5040 / 60 / warmup * fills * 60 < 0.95 * 5040


def test_the_replay_depends_on_the_seed_books_and_the_flow():
    deep = forecast().fills_of_first(3000)
    assert forecast(seed=4).fills_of_first(3000) != deep
    thin = FillForecast(OrderFlow(ABC, seed=3, id_prefix="t-"), {s: (100, 10) for s in ABC}).fills_of_first(3000)
    assert thin != deep


def test_agreement_with_the_warm_up_is_within_two_percent():
    f = forecast()
    made = f.fills_of_first(1000)
    assert f.agrees(1000, made) and f.agrees(1000, made * 1.015)
    assert not f.agrees(1000, made * 1.05) and not f.agrees(1000, made * 0.95)
    assert not f.agrees(0, 0)


def test_a_flow_that_never_fills_has_no_window_rate():
    passive_only = OrderMix(aggressive_ratio=0.0)
    assert forecast(mix=passive_only).order_rate_for(1000, 0, 10.0) is None


def test_seeds_are_known_only_for_shards_seeded_since_the_last_load():
    assert seeds_for(SHARD_SYMBOLS["a"], SHARD_SYMBOLS, {"a": (2000, 100)}) == {s: (2000, 100) for s in SHARD_SYMBOLS["a"]}
    assert seeds_for(ABC, SHARD_SYMBOLS, {"a": (500, 50), "b": (500, 50)}) is None  # c's books were traded on
    with pytest.raises(ValueError, match="no seed given"):
        FillForecast(OrderFlow(ABC, seed=1, id_prefix="t-"), {s: (500, 50) for s in SHARD_SYMBOLS["a"]})
    with pytest.raises(ValueError, match="positive"):
        forecast().order_rate_for(0, 0, 10.0)


class Counters:
    def __init__(self) -> None:
        self.matches, self.orders = 0.0, 0.0

    def read(self) -> tuple[float, float]:
        return self.matches, self.orders


@pytest.mark.parametrize("forecast_rate, want", [(86.0, 86.0), (None, 5040 / 60 / 1.05)])
def test_holding_steady_takes_the_forecast_rate_or_else_the_warm_ups_measurement(forecast_rate, want):
    counters = Counters()
    profile = AdaptiveRateProfile(80.0, 60.0)
    controller = MatchRateController(profile, 5040.0, counters.read, every_s=60).start()
    counters.orders, counters.matches = 1000, 1050
    seen = []

    def window_rate(orders: float, matches: float) -> float | None:
        seen.append((orders, matches))
        return forecast_rate

    assert controller.hold_steady(window_rate) == pytest.approx(want)
    assert seen == [(1000, 1050)]  # what the warm-up made, since the phase began
    assert profile.rate == pytest.approx(want)


def test_the_verdict_says_how_the_windows_rate_was_chosen():
    from types import SimpleNamespace

    from matchlab.experiment.criteria import forecast_note

    seen = {"warmup_orders": 1620, "warmup_matches": 1674, "warmup_forecast": 1674}
    used = SimpleNamespace(extra={"fill_forecast": {**seen, "used": True, "window_fills_per_order": 0.9761}})
    assert "0.976 fills per order as replayed" in forecast_note(used) and "made 1,674 matches" in forecast_note(used)
    unused = SimpleNamespace(extra={"fill_forecast": {**seen, "warmup_forecast": 1500, "used": False}})
    assert "forecast was not used" in forecast_note(unused) and "the replica 1,500" in forecast_note(unused)
    assert "warm-up's measured" in forecast_note(SimpleNamespace(extra={}))


def test_a_phase_at_one_rate_throughout_gets_the_rate_whose_window_makes_the_target():
    f = forecast()
    rate, fills = f.constant_rate_for(5040, 20.0, 120.0, guess=80.0)
    first, last = round(rate * 20), round(rate * 120)
    made = f.fills_of_first(last) - f.fills_of_first(first)
    assert made / 100 * 60 == pytest.approx(5040, abs=2 * 60 / 100)  # within two orders' fills
    assert fills == pytest.approx(made / (last - first))
    with pytest.raises(ValueError, match="warm-up"):
        f.constant_rate_for(5040, 120.0, 120.0, guess=80.0)
    assert forecast(mix=OrderMix(aggressive_ratio=0.0)).constant_rate_for(1000, 0.0, 10.0, guess=10.0) is None


def test_the_window_forecast_is_used_only_once_the_warm_up_agrees():
    from matchlab.experiment.runner import WindowForecast

    f = forecast()
    made = f.fills_of_first(1600)
    agreeing = WindowForecast(f, 5040, 100.0)
    assert agreeing.window_rate(1600, made) == pytest.approx(f.order_rate_for(5040, 1600, 100.0)[0])
    assert agreeing.info["used"] and agreeing.info["agreed"] and agreeing.info["warmup_forecast"] == made
    disagreeing = WindowForecast(f, 5040, 100.0)
    assert disagreeing.window_rate(1600, made * 0.9) is None
    assert disagreeing.info["used"] is False and disagreeing.info["agreed"] is False


def test_orders_due_by_a_scrape_stop_where_the_schedule_stopped():
    # 100 orders/s from t=1000 for 50 s: 5,000 sent. A scrape 3 s after the end saw no more of them.
    assert orders_due(999.0, 1000.0, 100.0, 5000) == 0
    assert orders_due(1010.005, 1000.0, 100.0, 5000) == 1001
    assert orders_due(1053.0, 1000.0, 100.0, 5000) == 5000


@pytest.mark.parametrize("seed", [1, 3, 5, 11])
def test_every_window_makes_the_bar_plus_three_sd_of_the_spread_over_the_longer_stretch(seed):
    """B2's rate: the lowest of the phase's windows makes the bar plus three sd, the sd read over 300 s of the
    flow, and the rate is the smallest that does (a little less and some window falls short)."""
    f = forecast(seed)
    rate, mean, sd, lowest = f.margin_rate_for(4750, 20, 120, 30, 5, 3.0, 80.0, spread_over_s=300)
    phase = f.window_rates(rate, 20, 120, 30, 5)
    spread = f.window_rates(rate, 20, 320, 30, 5)
    centre = sum(spread) / len(spread)
    assert sd == pytest.approx((sum((x - centre) ** 2 for x in spread) / (len(spread) - 1)) ** 0.5)
    assert mean == pytest.approx(sum(phase) / len(phase)) and lowest == min(phase)
    assert lowest >= 4750 + 3 * sd
    slower = rate * 0.99
    assert min(f.window_rates(slower, 20, 120, 30, 5)) < 4750 + 3 * sd
    own = f.margin_rate_for(4750, 20, 120, 30, 5, 3.0, 80.0)  # the phase's own dozen windows
    print(f"seed {seed}: {rate:.1f} orders/s, mean {mean:,.0f}/min, lowest {lowest:,.0f}; sd over 300 s "
          f"{sd:.0f}/min, over the phase's 100 s {own[2]:.0f}/min")


def test_the_margin_needs_a_window_and_a_flow_that_fills():
    with pytest.raises(ValueError, match="span of at least one window"):
        forecast().margin_rate_for(4750, 20, 40, 30, 5, 3.0, 80.0)
