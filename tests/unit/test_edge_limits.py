"""Edge limits from the environment: defaults, overrides, and errors that name the variable."""

from __future__ import annotations

import pytest

from matchlab.edge.limits import EdgeLimits, default_max_connections
from matchlab.errors import ConfigError
from matchlab.gateway.config import GatewayConfig


def test_defaults_are_an_operators():
    limits = EdgeLimits.from_env({})
    assert (limits.header_timeout_s, limits.body_timeout_s, limits.keepalive_timeout_s) == (10.0, 10.0, 60.0)
    assert limits.max_connections == default_max_connections() <= 10_000


def test_overrides_take_fractions():
    limits = EdgeLimits.from_env({"HEADER_TIMEOUT_S": "2.5", "MAX_CONNECTIONS": "300"})
    assert limits.header_timeout_s == 2.5 and limits.max_connections == 300


@pytest.mark.parametrize(("name", "value"), [("HEADER_TIMEOUT_S", "soon"), ("BODY_TIMEOUT_S", "0"),
                                             ("KEEPALIVE_TIMEOUT_S", "nan"), ("MAX_CONNECTIONS", "0")])
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        EdgeLimits.from_env({name: value})


def test_gateway_in_flight_bound():
    assert GatewayConfig.from_env({}).max_inflight_per_shard == 64
    assert GatewayConfig.from_env({"MAX_INFLIGHT_PER_SHARD": "8"}).max_inflight_per_shard == 8
    with pytest.raises(ConfigError, match="MAX_INFLIGHT_PER_SHARD"):
        GatewayConfig.from_env({"MAX_INFLIGHT_PER_SHARD": "0"})


def test_gateway_queue_wait_bound():
    assert GatewayConfig.from_env({}).shed_queue_wait_s == 0.2
    assert GatewayConfig.from_env({"SHED_QUEUE_WAIT_MS": "20"}).shed_queue_wait_s == 0.02
    with pytest.raises(ConfigError, match="SHED_QUEUE_WAIT_MS"):
        GatewayConfig.from_env({"SHED_QUEUE_WAIT_MS": "soon"})
