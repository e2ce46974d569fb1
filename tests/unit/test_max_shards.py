"""--max-shards: which values the scaling search takes, and the layout its stack gets."""

from __future__ import annotations

import pytest

from matchlab.harness.options import check_max_shards
from matchlab.harness.stack import scaling_layout
from matchlab.topology import SHARD_SYMBOLS, spread_symbols


@pytest.mark.parametrize("k", [3, 4, 5, 6])
def test_three_to_six_shards_are_accepted_locally(k: int) -> None:
    check_max_shards(k, "local")


@pytest.mark.parametrize("k", [0, 2, 7])
def test_out_of_range_is_a_usage_error(k: int) -> None:
    with pytest.raises(pytest.UsageError, match=f"3 to 6.*got {k}"):
        check_max_shards(k, "local")


def test_more_than_three_shards_need_the_local_backend() -> None:
    check_max_shards(3, "k3d")  # the standard three: every backend
    with pytest.raises(pytest.UsageError, match="needs the local backend.*k3d"):
        check_max_shards(4, "k3d")


def test_three_shards_keep_design_map_and_more_re_spread() -> None:
    assert scaling_layout(3) is None  # the MULTI stack serves
    four = scaling_layout(4)
    assert four == spread_symbols(4) and four["a"] == ["TEST-ASSET-A", "TEST-ASSET-B", "TEST-ASSET-C"]
    assert four != SHARD_SYMBOLS and sorted(s for v in four.values() for s in v) == \
        sorted(s for v in SHARD_SYMBOLS.values() for s in v)
