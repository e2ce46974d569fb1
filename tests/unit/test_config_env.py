"""Each service config's ``to_env()`` is the exact inverse of its ``from_env()``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from matchlab.edge.limits import EdgeLimits
from matchlab.errors import ConfigError
from matchlab.gateway.config import GatewayConfig
from matchlab.relay.config import RelayConfig
from matchlab.shard.config import EventsMode, ShardConfig
from matchlab.stack.spec import Topology, Wiring, app_services, gateway_config, relay_spec, shard_config

TOKEN = "t" * 32
NON_DEFAULT_EDGE = EdgeLimits(header_timeout_s=1.25, body_timeout_s=0.5, keepalive_timeout_s=7.0, max_connections=77,
                             fast_lane=False)


def non_default_shard() -> ShardConfig:
    """Every field away from its default, so a field to_env forgot cannot hide behind one."""
    return ShardConfig(
        shard_id="e", symbols=frozenset({"X-1", "X-2", "Y"}), http_port=18080, metrics_port=19091,
        bind_host="0.0.0.0", kafka_bootstrap="broker:19092", wal_path=Path("/tmp/journal-e"), wal_size_mb=3,
        ring_buffer_size=1024, fsync=False, admin_token=TOKEN, snapshot_every_records=7, order_id_window_s=9,
        order_id_window_ids=11, event_linger_ms=3, inject_match_delay_ms=2, events_mode=EventsMode.INPROCESS,
        events_outbox_bound=5,
        edge=NON_DEFAULT_EDGE,
    )


def non_default_gateway() -> GatewayConfig:
    return GatewayConfig(
        http_port=18080, metrics_port=19091, bind_host="0.0.0.0",
        shard_urls={"a": "http://h1:1", "d": "https://h2:2"}, symbol_owner={"X": "a", "Y": "d", "Z": "a"},
        admin_token=TOKEN, edge=NON_DEFAULT_EDGE, max_inflight_per_shard=3, shed_queue_wait_s=0.025, workers=4,
    )


@pytest.mark.parametrize("config", [ShardConfig.from_env({}), ShardConfig.from_env({"SHARD_ID": "c"}), non_default_shard()],
                         ids=["defaults", "shard-c", "non-default"])
def test_shard_config_round_trips(config: ShardConfig) -> None:
    assert ShardConfig.from_env(config.to_env()) == config


def test_shard_round_trip_carries_the_token_and_every_tuned_field() -> None:
    env = non_default_shard().to_env()
    assert env["ADMIN_TOKEN"] == TOKEN and env["WAL_FSYNC"] == "false" and env["MAX_CONNECTIONS"] == "77"
    assert env["SHARD_SYMBOLS"] == "X-1,X-2,Y"
    # each tuned field changed alone still comes back: none is lost behind another's default
    for field_name, value in (("fsync", False), ("order_id_window_s", 60), ("snapshot_every_records", 5),
                              ("inject_match_delay_ms", 2), ("events_mode", EventsMode.INPROCESS)):
        config = replace(ShardConfig.from_env({}), **{field_name: value})
        assert ShardConfig.from_env(config.to_env()) == config, field_name


@pytest.mark.parametrize("config", [GatewayConfig.from_env({}), non_default_gateway()], ids=["defaults", "non-default"])
def test_gateway_config_round_trips(config: GatewayConfig) -> None:
    assert GatewayConfig.from_env(config.to_env()) == config


def test_gateway_env_groups_symbols_by_shard() -> None:
    env = non_default_gateway().to_env()
    assert env["SHARD_SYMBOLS_MAP"] == "a=X:Z,d=Y"
    assert env["ME_SHARD_MAP"] == "a=http://h1:1,d=https://h2:2"
    assert env["SHED_QUEUE_WAIT_MS"] == "25" and env["MAX_INFLIGHT_PER_SHARD"] == "3"
    assert env["GATEWAY_WORKERS"] == "4" and "GATEWAY_WORKERS" not in GatewayConfig.from_env({}).to_env()


@pytest.mark.parametrize("raw, message", [("0", "GATEWAY_WORKERS must be >= 1"), ("65", "at most 64"),
                                          ("two", "GATEWAY_WORKERS")])
def test_gateway_workers_out_of_range_are_refused_by_name(raw: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        GatewayConfig.from_env({"GATEWAY_WORKERS": raw})


@pytest.mark.parametrize("config", [EdgeLimits.from_env({}), NON_DEFAULT_EDGE], ids=["defaults", "non-default"])
def test_edge_limits_round_trip(config: EdgeLimits) -> None:
    assert EdgeLimits.from_env(config.to_env()) == config


def test_defaults_are_left_to_the_service() -> None:
    """A limit the service picks itself (MAX_CONNECTIONS from its descriptor limit) is not pinned."""
    assert EdgeLimits.from_env({}).to_env() == {}
    assert "MAX_CONNECTIONS" not in ShardConfig.from_env({}).to_env()


def test_what_no_variable_can_say_is_refused() -> None:
    with pytest.raises(ValueError, match="retry_after_s"):
        EdgeLimits(retry_after_s=5).to_env()
    with pytest.raises(ValueError, match="SHED_QUEUE_WAIT_MS"):
        replace(non_default_gateway(), shed_queue_wait_s=0.0125).to_env()


def test_every_spec_environment_reads_back_as_its_config() -> None:
    """What the backends hand a service is what the service reads: the spec's config, exactly."""
    wiring = Wiring(18080, 19091, kafka_bootstrap="127.0.0.1:9", wal_path=Path("/tmp/w"),
                    shard_urls={s: f"http://127.0.0.1:{8081 + i}" for i, s in enumerate("abc")})
    specs = app_services(Topology.MULTI)
    for spec in specs + [relay_spec(s) for s in specs if s.shard]:
        config = spec.config(wiring)
        assert type(config).from_env(spec.environment(wiring)) == config, spec.name
    shard_env = app_services(Topology.SINGLE)[0].environment(wiring)
    assert shard_env["ORDER_ID_WINDOW_S"] == "60" and shard_env["SHARD_SYMBOLS"].startswith("TEST-ASSET-A,")


def test_config_helpers_take_tuning_as_config_fields() -> None:
    wiring = Wiring(1, 2, shard_urls={"a": "http://x:1"})
    assert shard_config("b", wiring, fsync=False).to_env()["WAL_FSYNC"] == "false"
    assert gateway_config(wiring).symbol_owner["TEST-ASSET-D"] == "a"
    with pytest.raises(TypeError):
        shard_config("a", wiring, no_such_field=1)


def test_a_negative_injected_match_delay_is_refused_by_name() -> None:
    from matchlab.errors import ConfigError

    with pytest.raises(ConfigError, match="INJECT_MATCH_DELAY_MS must be >= 0"):
        ShardConfig.from_env({"INJECT_MATCH_DELAY_MS": "-1"})


def test_a_shards_events_go_to_its_own_partition_unless_spread_by_key() -> None:
    from matchlab.errors import ConfigError
    from matchlab.topology import PARTITIONS, event_partition

    def partition(shard: str) -> int | None:
        return ShardConfig.from_env({"SHARD_ID": shard, "SHARD_SYMBOLS": "X"}).event_partition

    assert [partition(s) for s in "abcdef"] == [0, 1, 2, 3, 4, 5]
    assert 0 <= partition("east1") == event_partition("east1") < PARTITIONS
    assert ShardConfig.from_env({"SHARD_ID": "b", "EVENT_PARTITION": "key"}).event_partition is None
    assert ShardConfig.from_env({"EVENT_PARTITION": "11"}).event_partition == 11
    for bad in ("12", "-1", "x"):
        with pytest.raises(ConfigError, match=f"EVENT_PARTITION must be 'key' or a partition number 0-11.*{bad!r}"):
            ShardConfig.from_env({"EVENT_PARTITION": bad})
    # written only where it differs from the topology's, and read back exactly
    assert "EVENT_PARTITION" not in ShardConfig.from_env({"SHARD_ID": "c"}).to_env()
    for value in (None, 7):
        config = replace(ShardConfig.from_env({"SHARD_ID": "c"}), event_partition=value)
        assert ShardConfig.from_env(config.to_env()) == config


def test_the_relay_reads_its_shards_environment_and_keeps_no_token() -> None:
    shard = replace(non_default_shard(), events_mode=EventsMode.RELAY)
    relay = RelayConfig.for_shard(shard, 19093)
    env = relay.to_env()
    assert "ADMIN_TOKEN" not in env and env["RELAY_METRICS_PORT"] == "19093"
    assert env["WAL_PATH"] == "/tmp/journal-e" and env["KAFKA_BOOTSTRAP"] == "broker:19092"
    assert RelayConfig.from_env(env) == relay
    tuned = replace(relay, poll_ms=7, linger_ms=0, max_pending=9)
    assert RelayConfig.from_env(tuned.to_env()) == tuned


@pytest.mark.parametrize(("env", "message"), [
    ({"EVENTS_MODE": "kafka"}, "EVENTS_MODE must be 'relay' or 'inprocess', got 'kafka'"),
    ({"KAFKA_BOOTSTRAP": ""}, "KAFKA_BOOTSTRAP is empty: the relay has no broker"),
    ({"EVENTS_MODE": "inprocess"}, "a relay would send each twice"),
    ({"RELAY_POLL_MS": "0"}, "RELAY_POLL_MS must be >= 1"),
])
def test_a_relay_that_could_not_work_is_refused_by_name(env: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RelayConfig.from_env(env)


def test_only_a_shard_with_a_broker_and_the_relay_mode_is_relayed() -> None:
    assert ShardConfig.from_env({"KAFKA_BOOTSTRAP": "b:1"}).relayed
    assert not ShardConfig.from_env({"KAFKA_BOOTSTRAP": ""}).relayed
    assert not ShardConfig.from_env({"KAFKA_BOOTSTRAP": "b:1", "EVENTS_MODE": "inprocess"}).relayed
