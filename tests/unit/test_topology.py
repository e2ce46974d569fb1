"""The topology module: the facts every service, backend and manifest reads."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from matchlab import topology
from matchlab.gateway.config import GatewayConfig
from matchlab.shard.config import ShardConfig


def test_design_map_is_three_blocks_of_four() -> None:
    assert topology.SHARD_SYMBOLS == {
        "a": ["TEST-ASSET-A", "TEST-ASSET-B", "TEST-ASSET-C", "TEST-ASSET-D"],
        "b": ["TEST-ASSET-E", "TEST-ASSET-F", "TEST-ASSET-G", "TEST-ASSET-H"],
        "c": ["TEST-ASSET-I", "TEST-ASSET-J", "TEST-ASSET-K", "TEST-ASSET-L"],
    }


@pytest.mark.parametrize("count", range(1, topology.MAX_SHARDS + 1))
def test_spread_covers_every_symbol_once_in_near_equal_blocks(count: int) -> None:
    spread = topology.spread_symbols(count)
    assert list(spread) == list("abcdef"[:count])
    flat = [s for symbols in spread.values() for s in symbols]
    assert flat == list(topology.SYMBOLS)  # all, once each, in order
    sizes = [len(v) for v in spread.values()]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_spread_examples() -> None:
    assert topology.spread_symbols(1) == {"a": list(topology.SYMBOLS)}
    assert [len(v) for v in topology.spread_symbols(5).values()] == [3, 3, 2, 2, 2]
    assert topology.spread_symbols(6)["f"] == ["TEST-ASSET-K", "TEST-ASSET-L"]


@pytest.mark.parametrize("count", [0, 7, -1])
def test_spread_refuses_counts_out_of_range(count: int) -> None:
    with pytest.raises(ValueError, match="1 to 6 shards"):
        topology.spread_symbols(count)


def test_port_conventions() -> None:
    assert [topology.shard_host_port(s) for s in "abc"] == [8081, 8082, 8083]
    assert topology.shard_metrics_host_port("c") == 9193
    with pytest.raises(ValueError, match="unknown shard id 'z'"):
        topology.shard_host_port("z")


def test_service_defaults_come_from_the_topology() -> None:
    for shard in topology.SHARD_IDS:
        assert sorted(ShardConfig.from_env({"SHARD_ID": shard}).symbols) == topology.SHARD_SYMBOLS[shard]
    gateway = GatewayConfig.from_env({})
    assert {s: [k for k, v in gateway.symbol_owner.items() if v == s] for s in topology.SHARD_IDS} == \
        topology.SHARD_SYMBOLS
    assert gateway.shard_urls["b"] == "http://127.0.0.1:8082"


def test_topology_is_a_leaf() -> None:
    """It imports nothing from matchlab, so every service can read it without pulling in another."""
    tree = ast.parse(Path(topology.__file__).read_text())
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m.startswith("matchlab")], imported


def test_manifests_request_the_topology_cpu_budgets() -> None:
    from matchlab.k8s import manifests as m
    from matchlab.stack.spec import Role

    assert m.RESOURCES[Role.SHARD]["requests"]["cpu"] == "1" and m.RESOURCES[Role.SHARD]["limits"]["cpu"] == "2"
    assert m.RESOURCES[Role.GATEWAY]["requests"]["cpu"] == "500m"
    assert [m.cpu_quantity(c) for c in (0.25, 1.0, 1.5, 3)] == ["250m", "1", "1500m", "3"]
