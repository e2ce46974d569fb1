"""A fill forecast counts exactly the matches a real shard makes for the same seeded books and orders."""

from __future__ import annotations

import pytest

from matchlab.loadgen.fill_forecast import FillForecast, seeds_for
from matchlab.loadgen.flow import OrderFlow
from matchlab.loadgen.seeding import seed_books
from matchlab.promtext import counter_total, scrape
from matchlab.topology import SHARD_SYMBOLS

pytestmark = pytest.mark.integration

ORDERS = 1500


def test_the_replica_makes_the_shards_matches(shard_factory):
    shard = shard_factory("a")
    symbols = SHARD_SYMBOLS["a"]
    seed_books({"a": shard.url}, SHARD_SYMBOLS, 500, 50, token=shard.token)
    flow = OrderFlow(symbols, seed=3, id_prefix="live-")
    with shard.client() as client:
        for _ in range(ORDERS):
            assert client.post("/orders", json=flow.next_order()).status_code == 200
    made = counter_total(scrape(shard.metrics_url), "me_matches")
    forecast = FillForecast(OrderFlow(symbols, seed=3, id_prefix="twin-"), seeds_for(symbols, SHARD_SYMBOLS,
                                                                                   {"a": (500, 50)}))
    assert made == forecast.fills_of_first(ORDERS) > ORDERS * 0.8
    # The same orders against books seeded otherwise make another count: the equality above is not a coincidence.
    other = FillForecast(OrderFlow(symbols, seed=3, id_prefix="twin-"), {s: (100, 10) for s in symbols})
    assert other.fills_of_first(ORDERS) != made
