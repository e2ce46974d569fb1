"""Load shapes, order mixes, seeds and the remote-write encoding, without any process."""

from __future__ import annotations

import collections
import struct

import cramjam
import pytest

from matchlab.loadgen.flow import STATIONARY, OrderFlow, OrderMix, hot_symbol_mix, seed_orders
from matchlab.loadgen.profile import LoadProfile
from matchlab.loadgen.remote_write import RemoteWriteExporter, encode_write_request
from matchlab.loadgen.targets import SHARD_SYMBOLS, direct_targets, gateway_targets

SYMS = SHARD_SYMBOLS["a"]


def test_constant_profile_schedules_exactly_rate_times_duration():
    offsets = list(LoadProfile.constant(200, 10).send_offsets())
    assert len(offsets) == 2000
    assert offsets == sorted(offsets) and offsets[0] == 0.0 and offsets[-1] < 10.0
    assert offsets[1] - offsets[0] == pytest.approx(0.005)


def test_ramp_follows_its_stages_second_by_second():
    profile = LoadProfile.ramping(0, [(10, 100), (10, 100), (10, 0)])
    per_second = collections.Counter(int(t) for t in profile.send_offsets())
    assert sum(per_second.values()) == pytest.approx(profile.expected_requests(), abs=1)
    for s in range(30):
        expected = (profile.rate_at(s) + profile.rate_at(s + 1 - 1e-9)) / 2
        assert per_second.get(s, 0) == pytest.approx(expected, abs=1.5), s


def test_profile_rejects_nonsense():
    with pytest.raises(ValueError, match="positive duration"):
        LoadProfile.constant(10, 0)
    with pytest.raises(ValueError, match="negative"):
        LoadProfile.ramping(0, [(10, -1)])
    with pytest.raises(ValueError, match="at least one stage"):
        LoadProfile(1, ())


def test_stationary_mix_proportions_and_determinism():
    orders = [o for _, o in zip(range(20_000), OrderFlow(SYMS, seed=3))]
    aggressive = sum(o["type"] == "MARKET" for o in orders) / len(orders)
    buys = sum(o["side"] == "BUY" for o in orders) / len(orders)
    assert aggressive == pytest.approx(0.6, abs=0.02)
    assert buys == pytest.approx(0.5, abs=0.02)
    counts = collections.Counter(o["symbol"] for o in orders)
    assert set(counts) == set(SYMS) and min(counts.values()) > 4500
    for o in orders:
        if o["type"] == "LIMIT":  # passive: rests behind the reference, never crosses it
            assert (o["price"] < 15_000) if o["side"] == "BUY" else (o["price"] > 15_000)
            assert abs(o["price"] - 15_000) <= STATIONARY.passive_ticks
        assert 1 <= o["quantity"] <= 200
    again = [o for _, o in zip(range(20_000), OrderFlow(SYMS, seed=3))]
    without_ids = [{k: v for k, v in o.items() if k != "orderId"} for o in orders]
    assert [{k: v for k, v in o.items() if k != "orderId"} for o in again] == without_ids  # same orders...
    ids = {o["orderId"] for o in orders + again}
    assert len(ids) == 2 * len(orders)  # ...under ids no other flow uses: the shards de-duplicate by id


def test_hot_symbol_mix_sends_80_percent_to_one_symbol():
    symbols = [s for shard in "abc" for s in SHARD_SYMBOLS[shard]]
    orders = [o for _, o in zip(range(20_000), OrderFlow(symbols, hot_symbol_mix("TEST-ASSET-A"), seed=4))]
    share = sum(o["symbol"] == "TEST-ASSET-A" for o in orders) / len(orders)
    assert share == pytest.approx(0.8, abs=0.02)
    assert len({o["symbol"] for o in orders}) == 12


def test_mix_validation():
    with pytest.raises(ValueError, match="aggressive_ratio"):
        OrderMix(aggressive_ratio=1.5)
    with pytest.raises(ValueError, match="not among"):
        OrderFlow(SYMS, hot_symbol_mix("TEST-ASSET-Z"))


def test_seed_counts_levels_and_sides():
    orders = seed_orders("TEST-ASSET-A", 500, 50)
    assert len(orders) == 500
    asks = [o for o in orders if o["side"] == "SELL"]
    bids = [o for o in orders if o["side"] == "BUY"]
    assert len(asks) == len(bids) == 250
    assert {o["price"] for o in asks} == set(range(15_001, 15_026))
    assert {o["price"] for o in bids} == set(range(14_975, 15_000))
    assert all(10 <= o["quantity"] <= 200 for o in orders)
    assert len({o["orderId"] for o in orders}) == 500
    assert seed_orders("TEST-ASSET-A", 500, 50) == orders  # deterministic
    with pytest.raises(ValueError):
        seed_orders("TEST-ASSET-A", 10, 1)


def test_targets_route_by_owning_shard():
    direct = direct_targets({"a": "http://h:1/", "b": "http://h:2"})
    assert direct["TEST-ASSET-A"] == ("a", "http://h:1/orders")
    assert direct["TEST-ASSET-H"] == ("b", "http://h:2/orders")
    assert "TEST-ASSET-I" not in direct
    gw = gateway_targets("http://gw:8080", ["a", "b", "c"])
    assert gw["TEST-ASSET-L"] == ("c", "http://gw:8080/orders") and len(gw) == 12


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[i]
        value |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return value, i
        shift += 7


def _fields(buf: bytes):
    i = 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 2:
            n, i = _read_varint(buf, i)
            yield number, buf[i : i + n]
            i += n
        elif wire == 1:
            yield number, struct.unpack("<d", buf[i : i + 8])[0]
            i += 8
        else:
            v, i = _read_varint(buf, i)
            yield number, v


def test_remote_write_body_decodes_to_the_series_pushed():
    exporter = RemoteWriteExporter("http://unused", {"run": "r1"})
    exporter(1500, "200", "a")
    exporter(250_000, "503", "a")
    body = encode_write_request(exporter.series(), 1_700_000_000_000)
    raw = cramjam.snappy.decompress_raw(body).read()
    decoded = []
    for number, ts in _fields(raw):
        assert number == 1
        labels, samples = {}, []
        for n, part in _fields(ts):
            if n == 1:
                label = dict(_fields(part))
                labels[label[1].decode()] = label[2].decode()
            else:
                samples.append(dict(_fields(part)))
        assert list(labels) == sorted(labels)  # remote write requires sorted label names
        decoded.append((labels, samples[0][1], samples[0][2]))
    by_name = {(d[0]["__name__"], d[0].get("status"), d[0].get("le")): d[1] for d in decoded}
    assert by_name[("loadgen_requests_total", "200", None)] == 1
    assert by_name[("loadgen_requests_total", "503", None)] == 1
    assert by_name[("loadgen_request_duration_seconds_bucket", None, "0.002")] == 1
    assert by_name[("loadgen_request_duration_seconds_bucket", None, "+Inf")] == 2
    assert by_name[("loadgen_request_duration_seconds_count", None, None)] == 2
    assert all(d[2] == 1_700_000_000_000 and d[0]["job"] == "loadgen" for d in decoded)
