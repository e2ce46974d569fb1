"""Gateway configuration: ``ME_SHARD_MAP`` and ``SHARD_SYMBOLS_MAP`` (docs/internals/design.md §3.6), edge limits
(matchlab.edge.limits), ``MAX_INFLIGHT_PER_SHARD``, ``SHED_QUEUE_WAIT_MS`` and ``GATEWAY_WORKERS``.

Both maps are parsed strictly; any inconsistency (a symbol on two shards, a
shard with symbols but no URL, bad syntax) refuses to start with a message
naming the entry at fault.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from matchlab import topology
from matchlab.admin_auth import ADMIN_TOKEN_ENV, token_from_env
from matchlab.edge.limits import EdgeLimits
from matchlab.envparse import env_int, env_port
from matchlab.errors import ConfigError


def format_shard_map(shard_urls: Mapping[str, str]) -> str:
    """``ME_SHARD_MAP``: a=http://host:port,b=..."""
    return ",".join(f"{shard}={url}" for shard, url in shard_urls.items())


def format_symbols_map(shard_symbols: Mapping[str, Iterable[str]]) -> str:
    """``SHARD_SYMBOLS_MAP``: a=SYM1:SYM2,b=..."""
    return ",".join(f"{shard}={':'.join(symbols)}" for shard, symbols in shard_symbols.items())


# When unset: the three shards on their host ports (8081..), and the symbol map of docs/internals/design.md §2.
DEFAULT_SHARD_MAP = format_shard_map(
    {s: f"http://127.0.0.1:{topology.shard_host_port(s)}" for s in topology.SHARD_IDS}
)
DEFAULT_SYMBOLS_MAP = format_symbols_map(topology.SHARD_SYMBOLS)
# Orders in flight to one shard beyond which the gateway sheds (503 + Retry-After) instead of
# queueing. A shard answers in ~1-5 ms, so 64 in flight is already tens of ms of queue:
# past that, waiting longer only moves the latency cliff into the caller's p99.
DEFAULT_MAX_INFLIGHT_PER_SHARD = 64
# When the gateway's own loop is the bottleneck, requests queue before any handler runs (all
# ready sockets are read in one loop turn, then handled one by one), where no in-flight count
# sees them. A request that already waited this long inside the gateway is shed as well: by default
# the ASR's own bar (200 ms), so a GC pause or a busy core does not turn into errors; a latency-first
# edge sets it lower.
DEFAULT_SHED_QUEUE_WAIT_MS = 200
# GATEWAY_WORKERS=N: N processes serve HTTP_PORT together (SO_REUSEPORT), for machines with cores to spare;
# the one started runs none itself but supervises them and serves their metrics merged on METRICS_PORT.
MAX_WORKERS = 64
WORKER_INDEX_ENV = "GATEWAY_WORKER_INDEX"  # set by the supervisor in each worker's environment, never by hand


def _entries(raw: str, var: str) -> list[tuple[str, str]]:
    entries = []
    seen: set[str] = set()
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        shard, sep, value = part.partition("=")
        shard, value = shard.strip(), value.strip()
        if not sep or not shard or not value:
            raise ConfigError(f"{var}: entry {part!r} is not SHARD=VALUE")
        if not shard.isalnum():
            raise ConfigError(f"{var}: shard id {shard!r} must be alphanumeric")
        if shard in seen:
            raise ConfigError(f"{var}: shard {shard!r} appears twice")
        seen.add(shard)
        entries.append((shard, value))
    if not entries:
        raise ConfigError(f"{var} is empty")
    return entries


def parse_shard_map(raw: str) -> dict[str, str]:
    urls = {}
    for shard, url in _entries(raw, "ME_SHARD_MAP"):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"ME_SHARD_MAP: shard {shard!r} has an invalid URL {url!r} (want http://host:port)")
        try:
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError:
            raise ConfigError(f"ME_SHARD_MAP: shard {shard!r} URL {url!r} has a malformed port") from None
        urls[shard] = url.rstrip("/")
    return urls


def parse_symbols_map(raw: str) -> dict[str, str]:
    """symbol -> shard id."""
    owner: dict[str, str] = {}
    for shard, symbols in _entries(raw, "SHARD_SYMBOLS_MAP"):
        names = [s.strip() for s in symbols.split(":")]
        if any(not s for s in names):
            raise ConfigError(f"SHARD_SYMBOLS_MAP: shard {shard!r} has an empty symbol in {symbols!r}")
        for symbol in names:
            if symbol in owner:
                raise ConfigError(
                    f"SHARD_SYMBOLS_MAP: symbol {symbol!r} is on two shards ({owner[symbol]!r} and {shard!r})"
                )
            owner[symbol] = shard
    return owner


@dataclass(frozen=True)
class GatewayConfig:
    http_port: int
    metrics_port: int
    bind_host: str
    shard_urls: dict[str, str]
    symbol_owner: dict[str, str]
    # Guards /seed/{shardId} and is forwarded to the shard; never in repr (logs).
    admin_token: str | None = field(default=None, repr=False)
    edge: EdgeLimits = field(default_factory=EdgeLimits)
    max_inflight_per_shard: int = DEFAULT_MAX_INFLIGHT_PER_SHARD
    shed_queue_wait_s: float = DEFAULT_SHED_QUEUE_WAIT_MS / 1000
    workers: int = 1
    worker_index: int | None = None  # one of a supervisor's workers: shares HTTP_PORT with the others

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GatewayConfig:
        env = os.environ if env is None else env
        urls = parse_shard_map(env.get("ME_SHARD_MAP", DEFAULT_SHARD_MAP))
        owner = parse_symbols_map(env.get("SHARD_SYMBOLS_MAP", DEFAULT_SYMBOLS_MAP))
        missing = sorted({shard for shard in owner.values() if shard not in urls})
        if missing:
            raise ConfigError(f"shards {missing} own symbols in SHARD_SYMBOLS_MAP but have no URL in ME_SHARD_MAP")
        return cls(
            http_port=env_port(env, "HTTP_PORT", topology.APP_HTTP_PORT),
            metrics_port=env_port(env, "METRICS_PORT", topology.APP_METRICS_PORT),
            bind_host=env.get("BIND_HOST", "127.0.0.1"),
            shard_urls=urls,
            symbol_owner=owner,
            admin_token=token_from_env(env),
            edge=EdgeLimits.from_env(env),
            max_inflight_per_shard=env_int(env, "MAX_INFLIGHT_PER_SHARD", DEFAULT_MAX_INFLIGHT_PER_SHARD, minimum=1),
            shed_queue_wait_s=env_int(env, "SHED_QUEUE_WAIT_MS", DEFAULT_SHED_QUEUE_WAIT_MS, minimum=1) / 1000,
            workers=_workers(env),
            worker_index=env_int(env, WORKER_INDEX_ENV, -1) if env.get(WORKER_INDEX_ENV, "").strip() else None,
        )

    def to_env(self) -> dict[str, str]:
        """The environment ``from_env`` reads back as this configuration (the token included, if any).

        Wiring is always written; tuning only where it differs from the default.
        """
        shed_ms = round(self.shed_queue_wait_s * 1000)
        if shed_ms < 1 or shed_ms / 1000 != self.shed_queue_wait_s:
            raise ValueError(f"shed_queue_wait_s={self.shed_queue_wait_s} is not a whole number of milliseconds "
                             "(SHED_QUEUE_WAIT_MS)")
        by_shard: dict[str, list[str]] = {}
        for symbol, shard in self.symbol_owner.items():
            by_shard.setdefault(shard, []).append(symbol)
        env = {
            "HTTP_PORT": str(self.http_port),
            "METRICS_PORT": str(self.metrics_port),
            "BIND_HOST": self.bind_host,
            "ME_SHARD_MAP": format_shard_map(self.shard_urls),
            "SHARD_SYMBOLS_MAP": format_symbols_map(by_shard),
        }
        if self.max_inflight_per_shard != DEFAULT_MAX_INFLIGHT_PER_SHARD:
            env["MAX_INFLIGHT_PER_SHARD"] = str(self.max_inflight_per_shard)
        if shed_ms != DEFAULT_SHED_QUEUE_WAIT_MS:
            env["SHED_QUEUE_WAIT_MS"] = str(shed_ms)
        if self.workers != 1:
            env["GATEWAY_WORKERS"] = str(self.workers)
        if self.worker_index is not None:
            env[WORKER_INDEX_ENV] = str(self.worker_index)
        if self.admin_token is not None:
            env[ADMIN_TOKEN_ENV] = self.admin_token
        return {**env, **self.edge.to_env()}


def _workers(env: Mapping[str, str]) -> int:
    workers = env_int(env, "GATEWAY_WORKERS", 1, minimum=1)
    if workers > MAX_WORKERS:
        raise ConfigError(f"GATEWAY_WORKERS must be at most {MAX_WORKERS}, got {workers}")
    return workers
