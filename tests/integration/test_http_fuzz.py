"""HTTP fuzzing of the shard and gateway endpoints (hypothesis-driven requests, >= 1,000 per endpoint).

Never a 5xx, never a crash; every rejection is a 4xx carrying a reason; the
services still answer afterwards.
"""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matchlab.admin_auth import bearer

pytestmark = pytest.mark.integration

EXAMPLES = 1000
FIELDS = ["orderId", "symbol", "side", "type", "price", "quantity", "timestamp"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
near_valid_orders = st.fixed_dictionaries(
    {},
    optional={
        "orderId": st.text(max_size=70) | json_values,
        "symbol": st.sampled_from(["TEST-ASSET-A", "TEST-ASSET-E", "TEST-ASSET-Z", ""]) | json_values,
        "side": st.sampled_from(["BUY", "SELL", "buy", "HOLD"]) | json_values,
        "type": st.sampled_from(["LIMIT", "MARKET", "STOP"]) | json_values,
        "price": st.integers(-5, 2**64) | json_values,
        "quantity": st.integers(-5, 2**40) | json_values,
        "timestamp": st.integers(-5, 2**60) | json_values,
        "extra": json_values,
    },
)
def dumps(value) -> bytes:
    return json.dumps(value).encode()  # the stdlib writes integers of any size, as a hostile client may


def nested(depth: int, opener: bytes) -> bytes:
    """An order with an unknown field nested ``depth`` deep: small enough to pass the size limit."""
    closer = b"]" if opener == b"[" else b"}"
    inner = opener * depth if opener == b"[" else b'{"k":' * depth + b"1"
    return b'{"symbol":"TEST-ASSET-A","x":' + inner + closer * depth + b"}"


bodies = (
    near_valid_orders.map(dumps)
    | st.builds(nested, st.integers(1, 1300), st.sampled_from([b"[", b"{"]))
    | json_values.map(dumps)
    | st.binary(max_size=200)
    | st.lists(near_valid_orders, max_size=5).map(lambda o: dumps({"orders": o}))
)
content_types = st.sampled_from(["application/json", "application/json", "application/json", "text/plain", ""])


def fuzz(client: httpx.Client, path: str) -> None:
    seen: dict[int, int] = {}

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(body=bodies, content_type=content_types)
    def one(body: bytes, content_type: str) -> None:
        headers = {"content-type": content_type} if content_type else {}
        r = client.post(path, content=body, headers=headers)
        seen[r.status_code] = seen.get(r.status_code, 0) + 1
        assert r.status_code < 500, f"{path} answered {r.status_code} to {body[:200]!r}: {r.text[:200]}"
        if r.status_code >= 400:
            assert r.json().get("reason"), r.text

    one()
    assert sum(seen.values()) >= EXAMPLES and any(code >= 400 for code in seen), seen


def test_fuzz_shard_endpoints(shard_factory):
    shard = shard_factory("a")
    with shard.client() as client:
        for path in ("/orders", "/seed"):
            fuzz(client, path)
        assert client.get("/health").status_code == 200
    assert shard.process.running()


def test_fuzz_gateway_endpoints(shard_factory, gateway_factory):
    shards = {s: shard_factory(s) for s in "abc"}
    gateway = gateway_factory({s: h.url for s, h in shards.items()})
    with gateway.client() as client:
        for path in ("/orders", "/seed/a", "/seed/zz"):
            fuzz(client, path)
        assert client.get("/health").status_code == 200
    assert gateway.process.running() and all(h.process.running() for h in shards.values())


def test_deeply_nested_json_is_a_400_on_every_endpoint(shard_factory, gateway_factory):
    """JSON depth is bounded everywhere: 2,000 levels fit in a 4 KiB order body and still get a reasoned 400."""
    shard = shard_factory("a")
    gateway = gateway_factory({"a": shard.url})  # shard a's symbols
    deep = nested(2000, b"[")
    assert len(deep) <= 4096
    for base in (shard.url, gateway.url):
        for path in ("/orders", "/seed" if base == shard.url else "/seed/a"):
            headers = {"content-type": "application/json", **bearer(shard.token)}
            r = httpx.post(base + path, content=deep, headers=headers)
            assert r.status_code == 400 and r.json()["reason"], (base + path, r.status_code, r.text[:200])
    assert shard.process.running() and gateway.process.running()
