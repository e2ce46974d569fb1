"""What the journal's records hold, and the events made from them (docs/internals/design.md §3.3-§3.4).

The journal is the single source of events: an order record yields its
ORDER_PLACED, a match record *is* its MATCH_EXECUTED (the event's bytes,
journaled before it is published). The shard writes these records; replay,
the in-process publisher and the relay read them with the helpers here, so
all three agree on topics, keys, ids and payloads.
"""

from __future__ import annotations

import struct

import msgspec
import orjson

from matchlab.shard.orders import Order

# Journal record kinds. REC_ORDER_V1 (an order without its ack time) is only read, from older journals.
REC_ORDER_V1, REC_SEED, REC_MATCH, REC_RESET, REC_DELIVERED, REC_ORDER = 1, 2, 3, 4, 5, 6
ORDER_KINDS = (REC_ORDER, REC_ORDER_V1)

_ACK_MS = struct.Struct("<q")
_MARK = struct.Struct(">Q")
_encode = msgspec.msgpack.Encoder().encode
_decode_order = msgspec.msgpack.Decoder(Order).decode
decode_seed = msgspec.msgpack.Decoder(list[Order]).decode
_MATCH_ID = b'"matchId":"'
_SYMBOL = b'"symbol":"'
_TIMESTAMP = b'"timestamp":'


def encode_order(order: Order) -> bytes:
    return _encode(order)


def encode_seed(orders: list[Order]) -> bytes:
    return _encode(orders)


def encode_mark(index: int) -> bytes:
    """A delivery mark record's payload (the in-process publisher's outbox, ``outbox``)."""
    return _MARK.pack(index)


def decode_mark(payload: bytes) -> int:
    return _MARK.unpack(payload)[0]


def order_record(encoded_order: bytes, ack_ms: int) -> bytes:
    """An order record's payload: the acknowledgement's time, then the order."""
    return _ACK_MS.pack(ack_ms) + encoded_order


def decode_order_record(kind: int, payload: bytes) -> tuple[int, memoryview | bytes, Order]:
    """(ack ms, the order's encoding, the order); older records carry no ack time (0)."""
    if kind == REC_ORDER_V1:
        return 0, payload, _decode_order(payload)
    encoded = memoryview(payload)[_ACK_MS.size:]
    return _ACK_MS.unpack_from(payload)[0], encoded, _decode_order(encoded)


def match_number(payload: bytes) -> int:
    """n of the ``"<shard>-<n>"`` matchId in a match record, without parsing the whole event."""
    start = payload.index(_MATCH_ID) + len(_MATCH_ID)
    end = payload.index(b'"', start)
    return int(payload[payload.rindex(b"-", start, end) + 1:end])


def match_symbol(payload: bytes) -> bytes:
    """The symbol of a match record (its event's key), without parsing the whole event."""
    start = payload.index(_SYMBOL) + len(_SYMBOL)
    return payload[start:payload.index(b'"', start)]


def match_time_ms(payload: bytes) -> int:
    """When the match was executed (the event's ``timestamp``, its last field)."""
    start = payload.rindex(_TIMESTAMP) + len(_TIMESTAMP)
    return int(payload[start:payload.index(b"}", start)])


def order_placed(order: Order, now_ms: int) -> bytes:
    return orjson.dumps(
        {
            "type": "ORDER_PLACED",
            "orderId": order.orderId,
            "symbol": order.symbol,
            "side": order.side,
            "price": order.price,
            "quantity": order.quantity,
            "timestamp": now_ms,
        }
    )


def match_event(match_id: str, order: Order, fill: tuple, now_ms: int) -> bytes:
    maker_id, price, qty = fill
    return orjson.dumps(
        {
            "type": "MATCH_EXECUTED",
            "matchId": match_id,
            "takerOrderId": order.orderId,
            "makerOrderId": maker_id,
            "symbol": order.symbol,
            "executionPrice": price,
            "executionQuantity": qty,
            "takerSide": order.side,
            "timestamp": now_ms,
        }
    )
