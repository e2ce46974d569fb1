"""Validation of order and seed bodies: every rejection names the field."""

from __future__ import annotations

import orjson
import pytest

from matchlab.shard.orders import MAX_QUANTITY, OrderRejected, parse_order, parse_seed

SYMBOLS = frozenset(["TEST-ASSET-A"])
GOOD = {"orderId": "o1", "symbol": "TEST-ASSET-A", "side": "BUY", "type": "LIMIT", "price": 15000, "quantity": 10}


def body(**changes) -> bytes:
    doc = {**GOOD, **changes}
    return orjson.dumps({k: v for k, v in doc.items() if v is not ...})


def test_valid_limit_and_market():
    assert parse_order(body(), SYMBOLS).price == 15000
    market = parse_order(body(type="MARKET", price=...), SYMBOLS)
    assert market.type == "MARKET" and market.price is None
    assert parse_order(body(timestamp=1700000000000), SYMBOLS).timestamp == 1700000000000


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (body(orderId=...), "orderId"),
        (body(orderId=""), "orderId"),
        (body(orderId=7), "orderId"),
        (body(orderId="x" * 65), "orderId"),
        (body(symbol=...), "symbol"),
        (body(symbol=5), "symbol"),
        (body(symbol="TEST-ASSET-Z"), "symbol"),
        (body(side="buy"), "side"),
        (body(side=None), "side"),
        (body(type="STOP"), "type"),
        (body(price=0), "price"),
        (body(price=-5), "price"),
        (body(price=1.5), "price"),
        (body(price="15000"), "price"),
        (body(price=True), "price"),
        (body(price=...), "price"),  # LIMIT without a price
        (body(type="MARKET"), "price"),  # MARKET with a price
        (body(quantity=0), "quantity"),
        (body(quantity=-1), "quantity"),
        (body(quantity=MAX_QUANTITY + 1), "quantity"),
        (body(quantity=10.0), "quantity"),
        (body(quantity=...), "quantity"),
        (body(timestamp="now"), "timestamp"),
        (body(timestamp=-1), "timestamp"),
        (body(extra=1), "extra"),
    ],
)
def test_each_bad_field_is_named(raw: bytes, field: str):
    with pytest.raises(OrderRejected) as err:
        parse_order(raw, SYMBOLS)
    assert field in err.value.reason


@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b"[]", b"null", b'"x"', b"[" * 5000 + b"]" * 5000])
def test_malformed_documents(raw: bytes):
    with pytest.raises(OrderRejected) as err:
        parse_order(raw, SYMBOLS)
    assert err.value.reason


def test_rejection_carries_order_id_when_readable():
    with pytest.raises(OrderRejected) as err:
        parse_order(body(quantity=0), SYMBOLS)
    assert err.value.order_id == "o1"


def test_seed_accepts_limit_orders_and_names_the_bad_one():
    good = [GOOD, {**GOOD, "orderId": "o2", "side": "SELL", "price": 15001}]
    assert len(parse_seed(orjson.dumps({"orders": good}), SYMBOLS)) == 2
    with pytest.raises(OrderRejected) as err:
        parse_seed(orjson.dumps({"orders": [GOOD, {**GOOD, "type": "MARKET", "price": None}]}), SYMBOLS)
    assert "orders[1].type" in err.value.reason
    with pytest.raises(OrderRejected) as err:
        parse_seed(orjson.dumps({"orders": [GOOD, {**GOOD, "quantity": 0}]}), SYMBOLS)
    assert "orders[1].quantity" in err.value.reason
    with pytest.raises(OrderRejected) as err:
        parse_seed(orjson.dumps({"orders": [{**GOOD, "symbol": "TEST-ASSET-Q"}]}), SYMBOLS)
    assert "orders[0].symbol" in err.value.reason
    with pytest.raises(OrderRejected):
        parse_seed(b'{"orders": 5}', SYMBOLS)
