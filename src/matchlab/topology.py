"""The deployment's facts, written once (docs/internals/design.md §2-§3): shards and their symbols, topics and
partitions, port conventions and CPU budgets.

A leaf module: it imports nothing from matchlab, so the services, the load generator, the
backends and the manifests can all read it without pulling in one another. Changing a fact here
changes it everywhere; the service configs (``ShardConfig``, ``GatewayConfig``) take their
defaults from here and turn a configuration into its environment with ``to_env()``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

# -- shards and symbols ---------------------------------------------------------------------------

SYMBOLS: tuple[str, ...] = tuple(f"TEST-ASSET-{chr(ord('A') + i)}" for i in range(12))
SHARD_IDS: tuple[str, ...] = ("a", "b", "c")  # docs/internals/design.md §2: three symbol-sharded shards
# The most shards a capacity search spreads the symbols over (two symbols each).
MAX_SHARDS = 6


def shard_ids(count: int) -> tuple[str, ...]:
    """The first ``count`` shard ids: a, b, c, ... (the standard three come first)."""
    if not 1 <= count <= MAX_SHARDS:
        raise ValueError(f"a topology has 1 to {MAX_SHARDS} shards, got {count}")
    return tuple(chr(ord("a") + i) for i in range(count))


def spread_symbols(count: int, symbols: tuple[str, ...] = SYMBOLS) -> dict[str, list[str]]:
    """All symbols over ``count`` shards in contiguous, near-equal blocks (larger blocks first).

    Three shards give the standard map (a: A..D, b: E..H, c: I..L); six give two symbols each.
    """
    ids = shard_ids(count)
    if count > len(symbols):
        raise ValueError(f"{count} shards cannot share {len(symbols)} symbols: each shard needs one")
    base, extra = divmod(len(symbols), count)
    spread, start = {}, 0
    for i, shard in enumerate(ids):
        size = base + (1 if i < extra else 0)
        spread[shard] = list(symbols[start : start + size])
        start += size
    return spread


# docs/internals/design.md §2: shard a owns TEST-ASSET-A..D, b owns E..H, c owns I..L.
SHARD_SYMBOLS: dict[str, list[str]] = spread_symbols(len(SHARD_IDS))

# -- topics ---------------------------------------------------------------------------------------

TOPIC_MATCHES = "matches"  # MATCH_EXECUTED events
TOPIC_ORDERS = "orders"  # ORDER_PLACED events
TOPICS: tuple[str, ...] = (TOPIC_MATCHES, TOPIC_ORDERS)
PARTITIONS = 12  # per topic, created by the harness (Tansu and the Redpanda Job alike)


def event_partition(shard: str) -> int:
    """The partition (of each topic) a shard's events go to, keyed by symbol as docs/internals/design.md §3.4 says.

    librdkafka sends one produce request per partition, and the broker's cost is per request: a
    shard whose four symbols hash to four partitions of two topics sends up to eight requests per
    linger period, one partition per topic sends two. A symbol's events still share one partition
    (its shard's), so their order holds. Shards a..f take partitions 0..5; any other id a stable hash.
    """
    try:
        return shard_index(shard) % PARTITIONS
    except ValueError:
        return zlib.crc32(shard.encode()) % PARTITIONS


# -- ports ----------------------------------------------------------------------------------------

# Inside a pod (and a service's default when started by hand): docs/internals/design.md §3.1 and §3.6.
APP_HTTP_PORT = 8080
APP_METRICS_PORT = 9091
RELAY_METRICS_PORT = 9093  # a shard's relay, beside it in the pod
KAFKA_PORT = 9092
DEFAULT_KAFKA_BOOTSTRAP = f"localhost:{KAFKA_PORT}"
# On the host (k3d port mappings, and the gateway's default shard map for services run by hand):
# the gateway on 8080, shard i on 8081 + i and its metrics on 9191 + i. The local backend picks
# free ports instead.
GATEWAY_HOST_PORT = 8080
SHARD_HOST_PORT_BASE = 8081
SHARD_METRICS_HOST_PORT_BASE = 9191


def shard_index(shard: str) -> int:
    if len(shard) != 1 or not "a" <= shard < chr(ord("a") + MAX_SHARDS):
        raise ValueError(f"unknown shard id {shard!r}: shards are a..{chr(ord('a') + MAX_SHARDS - 1)}")
    return ord(shard) - ord("a")


def shard_host_port(shard: str) -> int:
    return SHARD_HOST_PORT_BASE + shard_index(shard)


def shard_metrics_host_port(shard: str) -> int:
    return SHARD_METRICS_HOST_PORT_BASE + shard_index(shard)


# -- CPU budgets ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuBudget:
    """CPUs a service may use: what Kubernetes requests and limits (the unscaled numbers)."""

    request: float
    limit: float


CPU_BUDGETS: dict[str, CpuBudget] = {
    "shard": CpuBudget(request=1.0, limit=2.0),
    "relay": CpuBudget(request=0.25, limit=0.5),  # the shard's event relay, a second container in its pod
    "gateway": CpuBudget(request=0.5, limit=1.0),
    "broker": CpuBudget(request=1.0, limit=2.0),
    "prometheus": CpuBudget(request=0.25, limit=0.5),
}


@dataclass(frozen=True)
class MemoryBudget:
    """Memory a service may use, as Kubernetes quantities (the Docker engine gets the limit as bytes)."""

    request: str
    limit: str


MEMORY_BUDGETS: dict[str, MemoryBudget] = {
    "shard": MemoryBudget(request="512Mi", limit="1Gi"),
    # RELAY_MAX_PENDING (100,000) events in its producer's queue at most: well under 256Mi.
    "relay": MemoryBudget(request="128Mi", limit="256Mi"),
    "gateway": MemoryBudget(request="256Mi", limit="512Mi"),
    "broker": MemoryBudget(request="1Gi", limit="2Gi"),
    "prometheus": MemoryBudget(request="256Mi", limit="512Mi"),
}
_BINARY_UNITS = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}


def quantity_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity with a binary suffix ("512Mi", "1Gi") as bytes."""
    for suffix, factor in _BINARY_UNITS.items():
        if quantity.endswith(suffix):
            return int(quantity[: -len(suffix)]) * factor
    return int(quantity)


# While capacities are measured on the local backend, for a 2-core machine (scaled with the cores):
# "shards" is what all the shards of the largest configuration share (0.1 CPU each for three), the
# gateway has its own. Split equally over K shards, every N = 1..K runs each shard at the same budget
# and N = K still leaves room for the load generator, the relays, the broker and Prometheus: at 0.2 CPU
# each, N = 3's knee (~3,000 orders/s) took the rest of two cores, and its steps failed outside the shards.
SCALING_CPU_PER_2_CORES: dict[str, float] = {"shards": 0.3, "gateway": 0.5}
