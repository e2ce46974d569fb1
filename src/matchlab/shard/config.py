"""Shard configuration from the environment (DESIGN.md §3.1)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from matchlab.admin_auth import token_from_env
from matchlab.edge.limits import EdgeLimits
from matchlab.envparse import env_bool, env_int, env_port
from matchlab.errors import ConfigError

# Journal records between snapshots: bounds the replay at start-up.
DEFAULT_SNAPSHOT_EVERY = 50_000

DEFAULT_SYMBOLS = {
    "a": "TEST-ASSET-A,TEST-ASSET-B,TEST-ASSET-C,TEST-ASSET-D",
    "b": "TEST-ASSET-E,TEST-ASSET-F,TEST-ASSET-G,TEST-ASSET-H",
    "c": "TEST-ASSET-I,TEST-ASSET-J,TEST-ASSET-K,TEST-ASSET-L",
}


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
    order_id_window_s: int = 600
    order_id_window_ids: int = 1_000_000
    edge: EdgeLimits = field(default_factory=EdgeLimits)

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
        ring = env_int(env, "RING_BUFFER_SIZE", 131072, minimum=2)
        if ring & (ring - 1):
            raise ConfigError(f"RING_BUFFER_SIZE must be a power of two, got {ring}")
        return cls(
            shard_id=shard_id,
            symbols=symbols,
            http_port=env_port(env, "HTTP_PORT", 8080),
            metrics_port=env_port(env, "METRICS_PORT", 9091),
            bind_host=env.get("BIND_HOST", "127.0.0.1"),
            kafka_bootstrap=env.get("KAFKA_BOOTSTRAP", "localhost:9092").strip(),
            wal_path=Path(env.get("WAL_PATH", f"./data/wal-{shard_id}.log")),
            wal_size_mb=env_int(env, "WAL_SIZE_MB", 64, minimum=1),
            ring_buffer_size=ring,
            # Benchmarks only: measures what durability costs. Never in experiments.
            fsync=env_bool(env, "WAL_FSYNC", True),
            admin_token=token_from_env(env),
            snapshot_every_records=env_int(env, "SNAPSHOT_EVERY_RECORDS", DEFAULT_SNAPSHOT_EVERY, minimum=1),
            order_id_window_s=env_int(env, "ORDER_ID_WINDOW_S", 600, minimum=1),
            order_id_window_ids=env_int(env, "ORDER_ID_WINDOW_IDS", 1_000_000, minimum=1),
            edge=EdgeLimits.from_env(env),
        )
