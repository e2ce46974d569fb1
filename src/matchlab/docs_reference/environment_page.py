"""The services' environment variables, read off their config classes' ``from_env``.

Which variables each service reads, and the default each falls back to, come
from running ``ShardConfig.from_env``, ``RelayConfig.from_env`` and ``GatewayConfig.from_env`` on an
environment that records what is asked of it. Only the one-line meanings are
written here; a variable the code reads without a meaning here stops the
generator, naming it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping

from matchlab.docs_reference.markdown import cell, code, document, header, table

UNSET = object()  # read without a default of its own

# What each variable means, for the reader; names, defaults and who reads them come from the code.
MEANINGS = {
    "SHARD_ID": "the shard's id, in its replies, metrics labels and match ids",
    "SHARD_SYMBOLS": "comma list of the symbols this shard trades",
    "HTTP_PORT": "the API's port",
    "METRICS_PORT": "the Prometheus `/metrics` port (and `/health`)",
    "BIND_HOST": "the address to listen on (`0.0.0.0` in containers)",
    "KAFKA_BOOTSTRAP": "the broker; empty disables events",
    "WAL_PATH": "the journal: a directory (segments and snapshots inside it) or a file (the first segment); "
                "a path that cannot be used exits 2 naming it",
    "WAL_SIZE_MB": "size bound of one journal segment",
    "RING_BUFFER_SIZE": "bound on accepted but not yet matched orders (a power of two); past it orders get 503",
    "WAL_FSYNC": "`false` only for benchmarks that measure what durability costs",
    "ADMIN_TOKEN": "secret (at least 16 characters) that `/admin/*` and `/seed` require as `Authorization: Bearer`; "
                   "unset, they answer 401 (see [security](security.md))",
    "SNAPSHOT_EVERY_RECORDS": "journal records between snapshots (bounds the replay at start-up)",
    "ORDER_ID_WINDOW_S": "how long acknowledged orderIds are remembered for idempotent retries",
    "ORDER_ID_WINDOW_IDS": "how many acknowledged orderIds are remembered (whichever bound is reached first)",
    "EVENTS_MODE": "`relay` (default): the shard journals its events and its relay process publishes them; "
                   "`inprocess`: the matching process publishes them itself (the coupled design, kept to compare)",
    "EVENTS_OUTBOX_BOUND": "`inprocess` only: events awaiting the broker beyond which a new order waits for room "
                           "(the coupled design's bounded outbox; `0`: unbounded)",
    "RELAY_METRICS_PORT": "the relay's `/metrics`, `/health` and `/ready` port",
    "RELAY_POLL_MS": "how often the relay looks for newly durable journal records",
    "RELAY_LINGER_MS": "how long the relay's producer gathers one look's events into a request (its looks do the "
                       "waiting; `EVENT_LINGER_MS` is the in-process publisher's)",
    "RELAY_MAX_PENDING": "events sent and not yet confirmed beyond which the relay stops reading (the journal, "
                         "not its memory, holds a backlog)",
    "EVENT_LINGER_MS": "how long events wait in the producer to share a produce request (librdkafka `linger.ms`)",
    "INJECT_MATCH_DELAY_MS": "a delay between an order being durable and being matched: an injected regression "
                             "for demonstrating comparisons, never for experiments",
    "EVENT_PARTITION": "the partition of each topic the shard's events go to; `key` spreads them by symbol",
    "HEADER_TIMEOUT_S": "a request header not complete this long after the connection opened (or after the first "
                        "byte following an idle pause) gets 408 and the connection is closed",
    "BODY_TIMEOUT_S": "a body not read within this gets 408 and the connection is closed",
    "KEEPALIVE_TIMEOUT_S": "an idle keep-alive connection is closed after this",
    "MAX_CONNECTIONS": "past this many open connections a new one gets 503 with `Retry-After` and is closed",
    "HTTP_FAST_LANE": "`false` serves `POST /orders` through aiohttp like every other route (to compare the two)",
    "ME_SHARD_MAP": "shard id to URL: `a=http://host:port,b=...`",
    "SHARD_SYMBOLS_MAP": "shard id to its symbols: `a=SYM1:SYM2,b=...` (explicit, no hashing)",
    "MAX_INFLIGHT_PER_SHARD": "orders in flight to one shard beyond which the gateway answers 503 at once "
                              "instead of queueing",
    "SHED_QUEUE_WAIT_MS": "an order that already waited this long inside the gateway is shed the same way",
    "GATEWAY_WORKERS": "N > 1 runs N gateway processes on the one port (`SO_REUSEPORT`), metrics merged",
    "GATEWAY_WORKER_INDEX": "set by the gateway's supervisor in each worker's environment; never by hand",
}
# Defaults that the code computes (per shard, per machine): said in words instead of one machine's value.
DEFAULT_IN_WORDS = {
    "SHARD_SYMBOLS": "the shard's own four symbols",
    "WAL_PATH": "`./data/wal-<SHARD_ID>.log`",
    "EVENT_PARTITION": "the shard's own (a..f: 0..5)",
    "MAX_CONNECTIONS": "min(10,000, half the descriptor hard limit)",
    "ADMIN_TOKEN": "unset",
}


class RecordingEnvironment(Mapping[str, str]):
    """An empty environment that notes each variable read and the default it falls back to.

    ``matchlab.envparse``'s readers call ``note_default``; a plain ``get(name, default)`` is
    noted here. Nothing is set, so the configuration built is the all-defaults one.
    """

    def __init__(self) -> None:
        self.defaults: dict[str, object] = {}

    def note_default(self, name: str, default: object) -> None:
        if self.defaults.get(name, UNSET) is UNSET:
            self.defaults[name] = default

    def get(self, key: str, default: object = None) -> object:
        self.note_default(key, UNSET if default is None else default)
        return default

    def __getitem__(self, key: str) -> str:
        self.note_default(key, UNSET)
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.note_default(key, UNSET)
        return False

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def read_by(from_env: Callable[[Mapping[str, str]], object]) -> dict[str, object]:
    """Variable -> default, in the order ``from_env`` reads them."""
    env = RecordingEnvironment()
    from_env(env)
    return env.defaults


def _default(name: str, value: object) -> str:
    if name in DEFAULT_IN_WORDS:
        return cell(DEFAULT_IN_WORDS[name])
    if value is UNSET or value == "":
        return "unset"
    if isinstance(value, bool):
        return code(str(value).lower())
    if isinstance(value, float) and value.is_integer():
        return code(int(value))
    return code(value)


def _rows(names: list[str], defaults: Mapping[str, object]) -> list[list[str]]:
    missing = [n for n in names if n not in MEANINGS]
    if missing:
        raise LookupError(f"{', '.join(missing)}: read by a service but without a meaning in "
                          f"matchlab.docs_reference.environment_page.MEANINGS; add one line each")
    return [[code(n), _default(n, defaults[n]), cell(MEANINGS[n])] for n in names]


def harness_variables() -> list[tuple[str, str]]:
    """(variable, meaning) of what the harness and the tools read; the names come from the code."""
    from matchlab.admin_auth import ADMIN_TOKEN_ENV
    from matchlab.k8s.render import CHARTS_DIR_ENV
    from matchlab.stack.prometheus import find_binary

    prometheus_env = inspect.signature(find_binary).parameters["env_var"].default
    return [
        (prometheus_env, "the Prometheus binary to run (default: `prometheus` on PATH)"),
        (CHARTS_DIR_ENV, ("a folder holding the pinned Helm chart archives (`prometheus-<version>.tgz`, "
                          "`grafana-<version>.tgz`), for machines without access to the chart repositories; "
                          "unset, the charts come from their public repositories at the pinned versions")),
        (ADMIN_TOKEN_ENV, "`python -m matchlab.loadgen --seed-books` sends it to the services it seeds"),
    ]


def page() -> str:
    from matchlab.gateway.config import GatewayConfig
    from matchlab.relay.config import RelayConfig
    from matchlab.shard.config import ShardConfig

    shard, gateway = read_by(ShardConfig.from_env), read_by(GatewayConfig.from_env)
    relay = read_by(RelayConfig.from_env)
    both = [n for n in shard if n in gateway]
    lines = header("Environment variables", """
The shard and the gateway are configured by their environment only. The harness writes it for
every service it starts (each config's `to_env()` is the inverse of its `from_env()`), so these
matter when you run a service by hand (`python -m matchlab.shard`, `python -m matchlab.gateway`) or
write your own deployment. A bad value stops the service at start with exit code 2 and one line
naming the variable.
""")
    same = [n for n in both if shard[n] == gateway[n] or n in DEFAULT_IN_WORDS]
    lines += ["## Both services", ""] + table(["variable", "default", "meaning"], _rows(same, shard))
    lines += ["## Shard", ""] + table(["variable", "default", "meaning"],
                                      _rows([n for n in shard if n not in same], shard))
    lines += ["## Relay", "", "A shard's event relay (`python -m matchlab.relay`) reads its shard's environment (the "
              "journal, the broker, the partition) and these of its own:", ""]
    lines += table(["variable", "default", "meaning"], _rows([n for n in relay if n not in shard], relay))
    lines += ["## Gateway", ""] + table(["variable", "default", "meaning"],
                                        _rows([n for n in gateway if n not in same], gateway))
    lines += ["## Harness and tools", ""] + table(["variable", "meaning"],
                                                  [[code(n), cell(m)] for n, m in harness_variables()])
    return document(lines)
