"""A re-spread layout on the local backend: the symbols over four shards, each routed to its new owner."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from matchlab.admin_auth import bearer
from matchlab.errors import PrerequisiteError
from matchlab.stack.local import LocalBackend
from matchlab.stack.spec import Topology
from matchlab.topology import SYMBOLS, spread_symbols

pytestmark = pytest.mark.integration


def test_four_shards_each_own_their_re_spread_symbols(tmp_path: Path):
    layout = spread_symbols(4)  # three symbols each: a A..C, b D..F, c G..I, d J..L
    backend = LocalBackend(tmp_path, shard_symbols=layout)
    try:
        ep = backend.start(Topology.MULTI, tmp_path / "run")
    except PrerequisiteError as exc:
        backend.stop()
        pytest.skip(f"prerequisite missing: {exc}")
    try:
        assert sorted(ep.shards) == ["a", "b", "c", "d"] and ep.shard_symbols == layout
        with httpx.Client(base_url=ep.gateway, timeout=10.0, headers=bearer(ep.admin_token)) as c:
            for symbol in SYMBOLS:
                order = {"orderId": f"l-{symbol}", "symbol": symbol, "side": "BUY", "type": "LIMIT",
                         "price": 14_000, "quantity": 5}
                r = c.post("/orders", json=order)
                assert r.status_code == 200, r.text
                assert symbol in layout[r.json()["shardId"]], (symbol, r.json())
        for shard, symbols in layout.items():
            owned = httpx.get(f"{ep.shards[shard]}/book/{symbols[-1]}").json()
            assert owned["bids"] == [[14_000, [[f"l-{symbols[-1]}", 5]]]]
        # DESIGN.md's map no longer holds: TEST-ASSET-D moved from shard a to shard b
        assert httpx.get(f"{ep.shards['a']}/book/TEST-ASSET-D").status_code == 404
    finally:
        backend.stop()
