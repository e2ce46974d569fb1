"""Short garbage-collector pauses for the long-running services.

CPython's full (generation 2) collection walks every tracked object still
alive, and it runs whenever the survivors have grown by a quarter. In a
service that is everything imported at start-up plus whatever lives long (a
shard's resting orders): measured 60-80 ms per full collection in the gateway
and a shard at 200 orders/s, each one a stall of every request in flight and
the largest term of their p99.

So each service freezes what is alive once it has started (``gc.freeze``:
moved out of the collector's generations, still freed by reference counts as
usual), and again after every full collection, so that no object is walked by
more than one full collection: a pause is bounded by what was allocated since
the last one, not by the size of the process. The cost: a reference cycle
whose objects were alive at a freeze and became garbage later is not
reclaimed. Requests in flight at that moment are the only such objects here;
their cycles (an exception's traceback, a finished task) are few and small.
"""

from __future__ import annotations

import gc

FULL = 2  # the oldest generation


def _freeze_after_full_collection(phase: str, info: dict) -> None:
    if phase == "stop" and info.get("generation") == FULL:
        gc.freeze()


def keep_full_collections_short() -> None:
    """Collect once, freeze what start-up left alive, and freeze the survivors of every later full collection."""
    gc.collect()
    gc.freeze()
    if _freeze_after_full_collection not in gc.callbacks:
        gc.callbacks.append(_freeze_after_full_collection)
