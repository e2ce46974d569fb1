"""Seeding books before a run: N resting orders per symbol over L levels.

Seeds go straight to a shard's ``/seed`` or through the gateway's
``/seed/{shardId}``; large seeds are sent in chunks. These are control calls
(a handful per run), so they use httpx, off the load path. Both routes need
the stack's admin token (``matchlab.admin_auth``).
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from matchlab.admin_auth import bearer
from matchlab.errors import SeedError
from matchlab.loadgen.flow import seed_orders

SEED_CHUNK = 5_000
SEED_TIMEOUT_S = 60.0


def post_seed(url: str, orders: list[dict], token: str | None, client: httpx.Client | None = None) -> int:
    """POST ``orders`` to a seed URL in chunks; return how many the server seeded."""
    own = client is None
    client = client or httpx.Client(timeout=SEED_TIMEOUT_S)
    seeded = 0
    try:
        for i in range(0, len(orders), SEED_CHUNK):
            resp = client.post(url, json={"orders": orders[i : i + SEED_CHUNK]}, headers=bearer(token))
            if resp.status_code != 200:
                raise SeedError(f"seeding {url} failed with HTTP {resp.status_code}: {resp.text[:300]}")
            seeded += resp.json()["seeded"]
    finally:
        if own:
            client.close()
    return seeded


def seed_url(base_url: str, shard_id: str, via_gateway: bool) -> str:
    base = base_url.rstrip("/")
    return f"{base}/seed/{shard_id}" if via_gateway else f"{base}/seed"


def seed_books(
    base_urls: Mapping[str, str],
    shard_symbols: Mapping[str, list[str]],
    count: int,
    levels: int,
    *,
    token: str | None,
    via_gateway: bool = False,
    per_shard: Mapping[str, tuple[int, int]] | None = None,
) -> dict[str, int]:
    """Seed every symbol of every shard in ``base_urls``; return orders seeded per shard.

    ``base_urls`` maps shard id to the shard's URL, or to the gateway's URL
    with ``via_gateway``. ``per_shard`` overrides (count, levels) for some
    shards (the hot-symbol experiment seeds shard a deeper). ``token`` is the
    stack's admin token (required by name, so no caller forgets it).
    """
    seeded: dict[str, int] = {}
    with httpx.Client(timeout=SEED_TIMEOUT_S) as client:
        for shard, base in base_urls.items():
            n, lv = (per_shard or {}).get(shard, (count, levels))
            orders = [o for symbol in shard_symbols[shard] for o in seed_orders(symbol, n, lv)]
            seeded[shard] = post_seed(seed_url(base, shard, via_gateway), orders, token, client)
    return seeded
