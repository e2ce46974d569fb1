"""The admin token on real shard and gateway processes: 401 without, 403 wrong, 200 right.

``/admin/*`` and ``/seed`` change (or reveal) the books' state, so they need
``Authorization: Bearer <ADMIN_TOKEN>``; ``/orders``, ``/health``,
``/book`` and ``/metrics`` stay open. The gateway checks the caller's token
on ``/seed/{shardId}`` and sends its own to the shard.
"""

from __future__ import annotations

import httpx
import pytest

from matchlab.admin_auth import NOT_CONFIGURED, new_token
from matchlab.waiting import wait_until

pytestmark = pytest.mark.integration

SEED_A = {"orders": [{"orderId": "auth-s1", "symbol": "TEST-ASSET-A", "side": "SELL", "type": "LIMIT",
                      "price": 15_010, "quantity": 3, "timestamp": 1}]}
ORDER_A = {"orderId": "auth-o1", "symbol": "TEST-ASSET-B", "side": "BUY", "type": "LIMIT", "price": 14_000,
           "quantity": 1, "timestamp": 2}
SHARD_ROUTES = (("POST", "/seed", SEED_A), ("POST", "/admin/reset", {}), ("GET", "/admin/stats", None))


def call(base: str, method: str, path: str, body: dict | None, headers: dict[str, str]) -> httpx.Response:
    return httpx.request(method, base + path, json=body, headers=headers, timeout=10.0)


@pytest.mark.parametrize(("method", "path", "body"), SHARD_ROUTES, ids=[p for _, p, _ in SHARD_ROUTES])
def test_shard_admin_and_seed_need_the_token(shard_factory, method, path, body):
    shard = shard_factory("a")
    missing = call(shard.url, method, path, body, {})
    assert missing.status_code == 401, missing.text
    assert "Bearer" in missing.json()["reason"] and missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert call(shard.url, method, path, body, {"Authorization": "Basic Zm9vOmJhcg=="}).status_code == 401
    wrong = call(shard.url, method, path, body, {"Authorization": f"Bearer {new_token()}"})
    assert wrong.status_code == 403 and wrong.json()["reason"] == "the admin token is wrong", wrong.text
    right = call(shard.url, method, path, body, {"Authorization": f"Bearer {shard.token}"})
    assert right.status_code == 200, right.text


def test_shard_refusals_change_nothing_and_open_routes_stay_open(shard_factory):
    shard = shard_factory("a")
    for headers in ({}, {"Authorization": f"Bearer {new_token()}"}):
        assert call(shard.url, "POST", "/seed", SEED_A, headers).status_code in (401, 403)
    assert httpx.get(f"{shard.url}/book/TEST-ASSET-A").json()["asks"] == []  # the refused seed left no trace
    assert httpx.post(f"{shard.url}/orders", json=ORDER_A).status_code == 200
    assert httpx.get(f"{shard.url}/health").status_code == 200
    assert httpx.get(shard.metrics_url).status_code == 200


def test_gateway_seed_needs_the_token_and_forwards_it(shard_factory, gateway_factory):
    shard = shard_factory("a")
    gateway = gateway_factory({"a": shard.url})
    assert call(gateway.url, "POST", "/seed/a", SEED_A, {}).status_code == 401
    assert call(gateway.url, "POST", "/seed/a", SEED_A, {"Authorization": f"Bearer {new_token()}"}).status_code == 403
    # The unknown-shard answer is behind the token too: no probing shard ids without it.
    assert call(gateway.url, "POST", "/seed/zz", SEED_A, {}).status_code == 401
    right = call(gateway.url, "POST", "/seed/a", SEED_A, {"Authorization": f"Bearer {gateway.token}"})
    assert right.status_code == 200 and right.json() == {"seeded": 1}, right.text
    assert len(httpx.get(f"{shard.url}/book/TEST-ASSET-A").json()["asks"]) == 1
    assert httpx.post(f"{gateway.url}/orders", json=ORDER_A).status_code == 200  # orders need no token
    assert httpx.get(gateway.metrics_url).status_code == 200


def test_gateway_sends_its_own_token_to_the_shard(shard_factory, gateway_factory):
    """A gateway holding another stack's token is refused by the shard: the 403 comes back through it."""
    shard = shard_factory("a")
    other = new_token()
    gateway = gateway_factory({"a": shard.url}, ADMIN_TOKEN=other)
    r = call(gateway.url, "POST", "/seed/a", SEED_A, {"Authorization": f"Bearer {other}"})
    assert r.status_code == 403 and r.json()["reason"] == "the admin token is wrong", r.text


def test_a_shard_without_a_token_refuses_admin_with_a_reason_and_serves_orders(shard_factory):
    """Started by hand without ADMIN_TOKEN (as `make shard` does): nothing to guess, admin is off."""
    shard = shard_factory("a", ADMIN_TOKEN="")
    for method, path, body in SHARD_ROUTES:
        r = call(shard.url, method, path, body, {"Authorization": f"Bearer {new_token()}"})
        assert r.status_code == 401 and r.json()["reason"] == NOT_CONFIGURED, r.text
    assert httpx.post(f"{shard.url}/orders", json=ORDER_A).status_code == 200
    assert "ADMIN_TOKEN is not set" in shard.process.log_tail()


def test_a_short_token_stops_the_shard_without_echoing_it(shard_factory):
    shard = shard_factory("a", start=False, ADMIN_TOKEN="letmein")
    shard.process.start()
    wait_until(lambda: shard.process.exit_code() is not None, 10, what="the shard to refuse the short token")
    assert shard.process.exit_code() == 2
    tail = shard.process.log_tail()
    assert "ADMIN_TOKEN is too short" in tail and "letmein" not in tail


def test_the_token_never_reaches_the_logs(shard_factory, gateway_factory):
    shard = shard_factory("a")
    gateway = gateway_factory({"a": shard.url})
    with gateway.client() as c:
        assert c.post("/seed/a", json=SEED_A).status_code == 200
        assert c.post("/seed/a", json={"orders": "not a list"}).status_code == 400
    shard.process.stop()
    gateway.process.stop()
    for log in (shard.process.log_path, gateway.process.log_path):
        text = log.read_text()
        assert text and shard.token not in text, log
