"""Where each order goes: straight to the owning shard, or through the gateway.

A ``TargetMap`` maps every symbol to (target label, orders URL); the label is
the owning shard's id either way, so client-side latency is reported per
shard whether or not a gateway sits in front.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from matchlab.loadgen.driver import DescribedSource
from matchlab.loadgen.flow import OrderFlow
from matchlab.loadgen.runner import Request, RequestSource
from matchlab.topology import SHARD_SYMBOLS

TargetMap = dict[str, tuple[str, str]]


def direct_targets(shard_urls: Mapping[str, str], shard_symbols: Mapping[str, list[str]] = SHARD_SYMBOLS) -> TargetMap:
    """Each symbol to its own shard's ``/orders`` (only the shards given)."""
    return {
        symbol: (shard, f"{url.rstrip('/')}/orders")
        for shard, url in shard_urls.items()
        for symbol in shard_symbols[shard]
    }


def gateway_targets(
    gateway_url: str, shards: list[str], shard_symbols: Mapping[str, list[str]] = SHARD_SYMBOLS
) -> TargetMap:
    """Each symbol of the given shards to the gateway's ``/orders``."""
    url = f"{gateway_url.rstrip('/')}/orders"
    return {symbol: (shard, url) for shard in shards for symbol in shard_symbols[shard]}


def flow_source(flow: OrderFlow, targets: TargetMap) -> RequestSource:
    """A request source drawing orders from ``flow`` and routing them by symbol."""
    missing = [s for s in flow.symbols if s not in targets]
    if missing:
        raise ValueError(f"no target for symbols {missing}")

    def next_request() -> Request:
        doc = flow.next_order()
        label, url = targets[doc["symbol"]]
        return Request(label, url, orjson.dumps(doc))

    return next_request


def interleave(weighted: list[tuple[float, RequestSource]]) -> RequestSource:
    """One source drawing from several at fixed proportions (their rates), evenly spread over time.

    Smooth weighted round-robin: each call credits every source its weight and
    takes from the one with the most credit, so a 1:7 mix sends one of the
    first kind every eighth request, not in bursts.
    """
    if not weighted or any(w <= 0 for w, _ in weighted):
        raise ValueError("interleave needs sources with positive rates")
    total = sum(w for w, _ in weighted)
    credit = [0.0] * len(weighted)

    def next_request() -> Request:
        for i, (w, _) in enumerate(weighted):
            credit[i] += w
        best = max(range(len(weighted)), key=credit.__getitem__)
        credit[best] -= total
        return weighted[best][1]()

    # Described sources stay described (each flow's share of the whole), so the mix can run elsewhere too.
    if all(getattr(source, "flows", None) for _, source in weighted):
        shares = tuple((w / total * share, flow) for w, source in weighted for share, flow in source.flows)
        return DescribedSource(next_request, shares)
    return next_request
