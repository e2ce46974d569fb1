"""``order`` and ``book``: try the system by hand through the endpoints of the recorded stack."""

from __future__ import annotations

import argparse
import time

import httpx

from matchlab.cli.stack_verbs import recorded
from matchlab.errors import ConfigError, ProcessError
from matchlab.stack.spec import Endpoints, Topology
from matchlab.topology import SHARD_SYMBOLS

REQUEST_TIMEOUT_S = 10.0


def owning_shard(symbol: str, topology: Topology) -> str:
    for shard in topology.shards:
        if symbol in SHARD_SYMBOLS[shard]:
            return shard
    traded = ", ".join(s for shard in topology.shards for s in SHARD_SYMBOLS[shard])
    raise ConfigError(f"unknown symbol {symbol!r}: this {topology.value} stack trades {traded}")


def _request(method: str, url: str, **kw) -> httpx.Response:
    try:
        return httpx.request(method, url, timeout=REQUEST_TIMEOUT_S, **kw)
    except httpx.HTTPError as exc:
        raise ProcessError(f"{method} {url} failed: {type(exc).__name__} {exc} (see `matchlab status`)") from None


def order(args: argparse.Namespace) -> int:
    record = recorded(args.reports_dir).record
    ep: Endpoints = record.endpoints
    shard = owning_shard(args.symbol, record.topology)
    url = f"{ep.gateway or ep.shards[shard]}/orders"  # through the gateway when the stack has one
    body = {"orderId": f"cli-{time.time_ns()}", "symbol": args.symbol, "side": args.side, "type": args.type,
            "quantity": args.quantity}
    if args.price is not None:
        body["price"] = args.price
    resp = _request("POST", url, json=body)
    try:
        reply = resp.json()
    except ValueError:
        reply = {}
    if resp.status_code != 200:
        raise ProcessError(f"{reply.get('status', 'REJECTED')} ({resp.status_code}): {reply.get('reason', resp.text)}")
    print(f"{reply['status']} {reply['orderId']} on shard {reply['shardId']}")
    return 0


def book_lines(snapshot: dict, levels: int) -> list[str]:
    """Asks above bids, best prices nearest the middle; per level the quantity and order count."""

    def row(side: str, level: list) -> str:
        price, orders = level
        return f"  {side}  {price:>10}  {sum(q for _, q in orders):>8}  ({len(orders)} order{'s' * (len(orders) != 1)})"

    asks = [row("ASK", lv) for lv in snapshot["asks"][:levels]]
    bids = [row("BID", lv) for lv in snapshot["bids"][:levels]]
    if not asks and not bids:
        return ["  (empty)"]
    return [*reversed(asks), *bids]


def book(args: argparse.Namespace) -> int:
    record = recorded(args.reports_dir).record
    shard = owning_shard(args.symbol, record.topology)
    resp = _request("GET", f"{record.endpoints.shards[shard]}/book/{args.symbol}")
    if resp.status_code != 200:
        raise ProcessError(f"book {args.symbol} ({resp.status_code}): {resp.json().get('reason', resp.text)}")
    print(f"{args.symbol} (shard {shard})")
    print(f"  {'':3}  {'price':>10}  {'quantity':>8}")
    print("\n".join(book_lines(resp.json(), args.levels)))
    return 0
