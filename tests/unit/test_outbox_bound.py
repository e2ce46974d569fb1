"""The coupled design's bounded outbox: past EVENTS_OUTBOX_BOUND events awaiting the broker, a new order waits.

A real pipeline (journal on disk, matching loop) with the in-process events
mode over a stand-in broker that confirms nothing until it is released, as a
frozen broker does.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from matchlab.shard.engine import MatchingEngine
from matchlab.shard.event_modes import InProcessEvents
from matchlab.shard.metrics import ShardMetrics
from matchlab.shard.orders import Order
from matchlab.shard.pipeline import OrderPipeline

SYM = "AAPL"


class FrozenBroker:
    """Takes every event and confirms none until ``release``."""

    def __init__(self) -> None:
        self.unconfirmed: list = []

    def start(self) -> None:
        pass

    def publish(self, topic: str, key: bytes, value: bytes, on_delivered=None, on_failed=None) -> bool:
        self.unconfirmed.append(on_delivered)
        return True

    def release(self) -> None:
        for confirm in self.unconfirmed:
            confirm()
        self.unconfirmed.clear()

    async def close(self, timeout_s: float) -> int:
        return 0


def sell(i: int) -> Order:  # resting orders: one event each (ORDER_PLACED), no fills
    return Order(orderId=f"s{i}", symbol=SYM, side="SELL", type="LIMIT", quantity=1, price=100 + i)


async def fourth_order_waits(tmp_path: Path, bound: int) -> tuple[bool, bool]:
    """(whether the fourth order was still waiting 0.2 s after three unconfirmed ones, whether it then went
    through once the broker confirmed)."""
    broker = FrozenBroker()
    pipeline = OrderPipeline(MatchingEngine("a", frozenset([SYM])), ShardMetrics("a"), InProcessEvents(broker, bound),
                             capacity=1024)
    await pipeline.start(tmp_path / "wal.log", fsync=False)
    for i in range(3):
        await pipeline.submit_order(sell(i), 0.0)
    fourth = asyncio.create_task(pipeline.submit_order(sell(3), 0.0))
    await asyncio.sleep(0.2)
    waited = not fourth.done()
    broker.release()
    await asyncio.wait_for(fourth, 2.0)
    await pipeline.close()
    return waited, pipeline.engine.depth("ask") == 4


def test_an_order_waits_while_the_outbox_is_full_and_goes_through_once_the_broker_confirms(tmp_path: Path):
    assert asyncio.run(fourth_order_waits(tmp_path, bound=3)) == (True, True)


def test_an_unbounded_outbox_never_holds_an_order_back(tmp_path: Path):
    assert asyncio.run(fourth_order_waits(tmp_path, bound=0)) == (False, True)
