"""The relay's configuration: its shard's own settings (one environment for both) plus a few of its own.

The relay reads the shard's variables (SHARD_ID, WAL_PATH, KAFKA_BOOTSTRAP,
EVENT_LINGER_MS, EVENT_PARTITION, BIND_HOST, ...) through ``ShardConfig``,
so the two cannot disagree on the journal or on where events go; on
Kubernetes both containers get the same environment. Its own:
RELAY_METRICS_PORT (9093), RELAY_POLL_MS (how often it looks for new
durable records), RELAY_LINGER_MS (its producer's linger), RELAY_MAX_PENDING
(events sent and not yet confirmed, beyond which it stops reading: the
journal, not its memory, holds a backlog). EVENT_LINGER_MS is the in-process
publisher's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

from matchlab import topology
from matchlab.admin_auth import ADMIN_TOKEN_ENV
from matchlab.envparse import env_int, env_port
from matchlab.errors import ConfigError
from matchlab.shard.config import EventsMode, ShardConfig

# Each look costs a wake-up; events wait up to this long before the relay sees them.
DEFAULT_RELAY_POLL_MS = 25
# The producer's linger in the relay only gathers one look's events (produced within a millisecond) into
# one request per topic; the look itself did the waiting (with the shard's 50 ms EVENT_LINGER_MS the
# match -> consumer p99 read 82 ms).
DEFAULT_RELAY_LINGER_MS = 5
DEFAULT_RELAY_MAX_PENDING = 100_000


@dataclass(frozen=True)
class RelayConfig:
    shard: ShardConfig
    metrics_port: int = topology.RELAY_METRICS_PORT
    poll_ms: int = DEFAULT_RELAY_POLL_MS
    linger_ms: int = DEFAULT_RELAY_LINGER_MS
    max_pending: int = DEFAULT_RELAY_MAX_PENDING

    @property
    def shard_id(self) -> str:
        return self.shard.shard_id

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RelayConfig:
        env = os.environ if env is None else env
        shard = ShardConfig.from_env(env)
        if not shard.kafka_bootstrap:
            raise ConfigError("KAFKA_BOOTSTRAP is empty: the relay has no broker to publish to")
        if shard.events_mode is not EventsMode.RELAY:
            raise ConfigError(f"EVENTS_MODE={shard.events_mode.value}: the shard publishes its own events, "
                              "a relay would send each twice")
        return cls(
            shard=shard,
            metrics_port=env_port(env, "RELAY_METRICS_PORT", topology.RELAY_METRICS_PORT),
            poll_ms=env_int(env, "RELAY_POLL_MS", DEFAULT_RELAY_POLL_MS, minimum=1),
            linger_ms=env_int(env, "RELAY_LINGER_MS", DEFAULT_RELAY_LINGER_MS, minimum=0),
            max_pending=env_int(env, "RELAY_MAX_PENDING", DEFAULT_RELAY_MAX_PENDING, minimum=1),
        )

    @classmethod
    def for_shard(cls, shard: ShardConfig, metrics_port: int = topology.RELAY_METRICS_PORT) -> RelayConfig:
        """The relay of ``shard`` (which keeps no admin token: the relay serves no admin route)."""
        return cls(shard=replace(shard, admin_token=None), metrics_port=metrics_port)

    def to_env(self) -> dict[str, str]:
        """The environment ``from_env`` reads back as this configuration."""
        env = {k: v for k, v in self.shard.to_env().items() if k != ADMIN_TOKEN_ENV}
        env["RELAY_METRICS_PORT"] = str(self.metrics_port)
        if self.poll_ms != DEFAULT_RELAY_POLL_MS:
            env["RELAY_POLL_MS"] = str(self.poll_ms)
        if self.linger_ms != DEFAULT_RELAY_LINGER_MS:
            env["RELAY_LINGER_MS"] = str(self.linger_ms)
        if self.max_pending != DEFAULT_RELAY_MAX_PENDING:
            env["RELAY_MAX_PENDING"] = str(self.max_pending)
        return env
