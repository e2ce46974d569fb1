"""A re-spread layout on the local backend: the symbols over four shards, each routed to its new owner."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from matchlab.admin_auth import bearer
from matchlab.errors import PrerequisiteError
from matchlab.harness.options import HarnessOptions, Profile
from matchlab.harness.stack import StackPool
from matchlab.stack.local import LocalBackend
from matchlab.stack.spec import Topology
from matchlab.topology import SHARD_SYMBOLS, SYMBOLS, spread_symbols

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
        # The standard map no longer holds: TEST-ASSET-D moved from shard a to shard b
        assert httpx.get(f"{ep.shards['a']}/book/TEST-ASSET-D").status_code == 404
    finally:
        backend.stop()


def pool_options(tmp_path: Path, max_shards: int) -> HarnessOptions:
    return HarnessOptions(backend="local", profile=Profile.QUICK, keep_stack=False, reports_dir=tmp_path,
                          kube_context=None, image_registry=None, plan=False, max_shards=max_shards)


def test_the_scaling_stack_is_the_multi_stack_for_three_shards(tmp_path: Path):
    pool = StackPool(pool_options(tmp_path, 3), tmp_path / "run")
    try:
        multi = pool.get(Topology.MULTI)
        assert pool.get(Topology.SCALING) is multi  # no restart between the B experiments and S1
    finally:
        pool.close()


def test_max_shards_gives_the_scaling_stack_its_re_spread_layout(tmp_path: Path):
    pool = StackPool(pool_options(tmp_path, 5), tmp_path / "run")
    try:
        stack = pool.get(Topology.SCALING)
        assert stack.topology is Topology.SCALING and sorted(stack.endpoints.shards) == list("abcde")
        assert stack.endpoints.shard_symbols == spread_symbols(5)
        assert pool.get(Topology.MULTI).endpoints.shard_symbols == SHARD_SYMBOLS  # MULTI keeps the standard map
    finally:
        pool.close()
