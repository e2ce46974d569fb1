"""Where each order goes: straight to the owning shard, or through the gateway.

A ``TargetMap`` maps every symbol to (target label, orders URL); the label is
the owning shard's id either way, so client-side latency is reported per
shard whether or not a gateway sits in front.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from matchlab.loadgen.flow import OrderFlow
from matchlab.loadgen.runner import Request, RequestSource

TargetMap = dict[str, tuple[str, str]]

# DESIGN.md §2: shard a owns TEST-ASSET-A..D, b owns E..H, c owns I..L.
SHARD_SYMBOLS: dict[str, list[str]] = {
    shard: [f"TEST-ASSET-{chr(ord('A') + 4 * i + j)}" for j in range(4)] for i, shard in enumerate("abc")
}


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
