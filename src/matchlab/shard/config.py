"""Shard configuration from the environment (docs/internals/design.md §3.1)."""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from matchlab import topology
from matchlab.admin_auth import ADMIN_TOKEN_ENV, token_from_env
from matchlab.edge.limits import EdgeLimits
from matchlab.envparse import env_bool, env_int, env_port
from matchlab.errors import ConfigError

# Journal records between snapshots: bounds the replay at start-up.
DEFAULT_SNAPSHOT_EVERY = 50_000
DEFAULT_WAL_SIZE_MB = 64
DEFAULT_RING_BUFFER_SIZE = 131072
DEFAULT_ORDER_ID_WINDOW_S = 600
DEFAULT_ORDER_ID_WINDOW_IDS = 1_000_000
# How long events wait in the producer to share a produce request (librdkafka linger.ms). The broker's
# cost is per request (one per partition): at 1,500 orders/s through the gateway it spent 189 µs per order
# at 10 ms, 121 at 25, 89 at 50, 55 at 100 (docs/internals/performance.md). Events are off the matching path.
DEFAULT_EVENT_LINGER_MS = 50
# A fixed delay between an order being durable and being matched, on the measured match latency
# (me_match_duration_seconds): only for showing that a comparison of runs detects a regression.
DEFAULT_INJECT_MATCH_DELAY_MS = 0
# EVENTS_MODE=inprocess: events awaiting the broker beyond which a new order waits for room. A matching process
# that owns its producer must bound what it holds for an absent broker: dropping events would break
# at-least-once, so its orders wait, and a broker outage reaches matching (the coupling A4 is there to catch).
# 2,000 is about four seconds of events at A4's rate (~540 a second), so an outage arm of 20-25 s stalls for
# most of its length; the broker up, a few hundred wait at most. 0: unbounded.
DEFAULT_EVENTS_OUTBOX_BOUND = 2_000

# SHARD_SYMBOLS when unset: the shard's own symbols in the map of docs/internals/design.md §2.
DEFAULT_SYMBOLS = {shard: ",".join(symbols) for shard, symbols in topology.SHARD_SYMBOLS.items()}


EVENT_PARTITION_BY_KEY = "key"


class EventsMode(enum.Enum):
    """Who publishes the shard's events (``event_modes``)."""

    RELAY = "relay"  # a relay process tails the journal: the matching process holds no Kafka client
    INPROCESS = "inprocess"  # the shard's own producer: the coupled design, kept for comparisons


def _events_mode(env: Mapping[str, str]) -> EventsMode:
    raw = env.get("EVENTS_MODE", "").strip().lower() or EventsMode.RELAY.value
    try:
        return EventsMode(raw)
    except ValueError:
        choices = " or ".join(repr(m.value) for m in EventsMode)
        raise ConfigError(f"EVENTS_MODE must be {choices}, got {env['EVENTS_MODE']!r}") from None


def _event_partition(env: Mapping[str, str], shard_id: str) -> int | None:
    raw = env.get("EVENT_PARTITION", "").strip()
    if not raw:
        return topology.event_partition(shard_id)
    if raw == EVENT_PARTITION_BY_KEY:
        return None
    if not raw.isdigit() or int(raw) >= topology.PARTITIONS:
        raise ConfigError(f"EVENT_PARTITION must be {EVENT_PARTITION_BY_KEY!r} or a partition number 0-"
                          f"{topology.PARTITIONS - 1} (the topics have {topology.PARTITIONS}), got {raw!r}")
    return int(raw)


@dataclass(frozen=True)
class ShardConfig:
    shard_id: str
    symbols: frozenset[str]
    http_port: int
    metrics_port: int
    bind_host: str
    kafka_bootstrap: str
    wal_path: Path
    wal_size_mb: int
    ring_buffer_size: int
    fsync: bool
    # Guards /admin/* and /seed; None leaves them refusing every request (401). Never in repr: logs.
    admin_token: str | None = field(default=None, repr=False)
    snapshot_every_records: int = DEFAULT_SNAPSHOT_EVERY
    order_id_window_s: int = DEFAULT_ORDER_ID_WINDOW_S
    order_id_window_ids: int = DEFAULT_ORDER_ID_WINDOW_IDS
    event_linger_ms: int = DEFAULT_EVENT_LINGER_MS
    inject_match_delay_ms: int = DEFAULT_INJECT_MATCH_DELAY_MS
    # The partition of each topic its events go to; None: librdkafka's partitioner spreads them by key.
    # from_env's default is the topology's (``topology.event_partition``); EVENT_PARTITION=key spreads.
    event_partition: int | None = None
    events_mode: EventsMode = EventsMode.RELAY
    events_outbox_bound: int = DEFAULT_EVENTS_OUTBOX_BOUND  # EVENTS_MODE=inprocess only
    edge: EdgeLimits = field(default_factory=EdgeLimits)

    @property
    def relayed(self) -> bool:
        """Events go out through a relay process (which needs a broker to send them to)."""
        return self.events_mode is EventsMode.RELAY and bool(self.kafka_bootstrap)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ShardConfig:
        env = os.environ if env is None else env
        shard_id = env.get("SHARD_ID", "a").strip()
        if not shard_id or not shard_id.isalnum():
            raise ConfigError(f"SHARD_ID must be a short alphanumeric id, got {shard_id!r}")
        raw_symbols = env.get("SHARD_SYMBOLS", DEFAULT_SYMBOLS.get(shard_id, ""))
        symbols = frozenset(s.strip() for s in raw_symbols.split(",") if s.strip())
        if not symbols:
            raise ConfigError(f"SHARD_SYMBOLS is empty: shard {shard_id!r} would own no symbol")
        ring = env_int(env, "RING_BUFFER_SIZE", DEFAULT_RING_BUFFER_SIZE, minimum=2)
        if ring & (ring - 1):
            raise ConfigError(f"RING_BUFFER_SIZE must be a power of two, got {ring}")
        return cls(
            shard_id=shard_id,
            symbols=symbols,
            http_port=env_port(env, "HTTP_PORT", topology.APP_HTTP_PORT),
            metrics_port=env_port(env, "METRICS_PORT", topology.APP_METRICS_PORT),
            bind_host=env.get("BIND_HOST", "127.0.0.1"),
            kafka_bootstrap=env.get("KAFKA_BOOTSTRAP", topology.DEFAULT_KAFKA_BOOTSTRAP).strip(),
            wal_path=Path(env.get("WAL_PATH", f"./data/wal-{shard_id}.log")),
            wal_size_mb=env_int(env, "WAL_SIZE_MB", DEFAULT_WAL_SIZE_MB, minimum=1),
            ring_buffer_size=ring,
            # Benchmarks only: measures what durability costs. Never in experiments.
            fsync=env_bool(env, "WAL_FSYNC", True),
            admin_token=token_from_env(env),
            snapshot_every_records=env_int(env, "SNAPSHOT_EVERY_RECORDS", DEFAULT_SNAPSHOT_EVERY, minimum=1),
            order_id_window_s=env_int(env, "ORDER_ID_WINDOW_S", DEFAULT_ORDER_ID_WINDOW_S, minimum=1),
            order_id_window_ids=env_int(env, "ORDER_ID_WINDOW_IDS", DEFAULT_ORDER_ID_WINDOW_IDS, minimum=1),
            event_linger_ms=env_int(env, "EVENT_LINGER_MS", DEFAULT_EVENT_LINGER_MS, minimum=0),
            inject_match_delay_ms=env_int(env, "INJECT_MATCH_DELAY_MS", DEFAULT_INJECT_MATCH_DELAY_MS, minimum=0),
            event_partition=_event_partition(env, shard_id),
            events_mode=_events_mode(env),
            events_outbox_bound=env_int(env, "EVENTS_OUTBOX_BOUND", DEFAULT_EVENTS_OUTBOX_BOUND, minimum=0),
            edge=EdgeLimits.from_env(env),
        )

    def to_env(self) -> dict[str, str]:
        """The environment ``from_env`` reads back as this configuration (the token included, if any).

        Identity and wiring are always written; tuning only where it differs from the default, so a
        service's environment shows what was chosen for it.
        """
        env = {
            "SHARD_ID": self.shard_id,
            "SHARD_SYMBOLS": ",".join(sorted(self.symbols)),
            "HTTP_PORT": str(self.http_port),
            "METRICS_PORT": str(self.metrics_port),
            "BIND_HOST": self.bind_host,
            "KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "WAL_PATH": str(self.wal_path),
            "WAL_SIZE_MB": str(self.wal_size_mb),
            "RING_BUFFER_SIZE": str(self.ring_buffer_size),
        }
        if not self.fsync:
            env["WAL_FSYNC"] = "false"
        tuning = {
            "SNAPSHOT_EVERY_RECORDS": (self.snapshot_every_records, DEFAULT_SNAPSHOT_EVERY),
            "ORDER_ID_WINDOW_S": (self.order_id_window_s, DEFAULT_ORDER_ID_WINDOW_S),
            "ORDER_ID_WINDOW_IDS": (self.order_id_window_ids, DEFAULT_ORDER_ID_WINDOW_IDS),
            "EVENT_LINGER_MS": (self.event_linger_ms, DEFAULT_EVENT_LINGER_MS),
            "INJECT_MATCH_DELAY_MS": (self.inject_match_delay_ms, DEFAULT_INJECT_MATCH_DELAY_MS),
            "EVENTS_OUTBOX_BOUND": (self.events_outbox_bound, DEFAULT_EVENTS_OUTBOX_BOUND),
        }
        env.update({name: str(value) for name, (value, default) in tuning.items() if value != default})
        if self.events_mode is not EventsMode.RELAY:
            env["EVENTS_MODE"] = self.events_mode.value
        if self.event_partition != topology.event_partition(self.shard_id):
            env["EVENT_PARTITION"] = EVENT_PARTITION_BY_KEY if self.event_partition is None else str(self.event_partition)
        if self.admin_token is not None:
            env[ADMIN_TOKEN_ENV] = self.admin_token
        return {**env, **self.edge.to_env()}
