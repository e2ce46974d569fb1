"""Edge limits from the environment, and the descriptor limit each service raises at start.

Variables (shared by the gateway and the shards; defaults an operator would pick,
as nginx's ``client_header_timeout`` / ``client_body_timeout`` / ``keepalive_timeout``
and HAProxy's ``maxconn``):

    HEADER_TIMEOUT_S     10   a request's header must be complete within this, counted
                              from the connection (or from the first byte after an idle
                              keep-alive pause); else 408 and close
    BODY_TIMEOUT_S       10   the body must be read within this; else 408 and close
    KEEPALIVE_TIMEOUT_S  60   an idle keep-alive connection is closed after this
    MAX_CONNECTIONS      min(10000, half the descriptor hard limit): past it a new
                              connection gets 503 + Retry-After and is closed
    HTTP_FAST_LANE       true  serve POST /orders in the edge's fast lane instead of
                              aiohttp (matchlab.edge.fastlane); false to A/B it
"""

from __future__ import annotations

import logging
import os
import resource
from collections.abc import Mapping
from dataclasses import dataclass

from matchlab.envparse import env_bool, env_int, env_seconds

DEFAULT_MAX_CONNECTIONS = 10_000
# Descriptors the process needs besides client connections: upstream pools, journal, broker, logs.
RESERVED_DESCRIPTORS = 1_024


def _descriptor_hard_limit() -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return hard if hard != resource.RLIM_INFINITY else 1 << 20


def default_max_connections() -> int:
    """Well below the descriptor limit (half of it), so the cap, not EMFILE, answers a flood."""
    return max(64, min(DEFAULT_MAX_CONNECTIONS, _descriptor_hard_limit() // 2))


@dataclass(frozen=True)
class EdgeLimits:
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    keepalive_timeout_s: float = 60.0
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    retry_after_s: int = 1  # what a refused or shed caller is told to wait
    fast_lane: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> EdgeLimits:
        env = os.environ if env is None else env
        return cls(
            header_timeout_s=env_seconds(env, "HEADER_TIMEOUT_S", 10.0),
            body_timeout_s=env_seconds(env, "BODY_TIMEOUT_S", 10.0),
            keepalive_timeout_s=env_seconds(env, "KEEPALIVE_TIMEOUT_S", 60.0),
            max_connections=env_int(env, "MAX_CONNECTIONS", default_max_connections(), minimum=1),
            fast_lane=env_bool(env, "HTTP_FAST_LANE", True),
        )

    def to_env(self) -> dict[str, str]:
        """The inverse of ``from_env``: only the limits that differ from what a service picks by itself
        (so a generated manifest does not pin this machine's descriptor limit on a pod)."""
        if self.retry_after_s != EdgeLimits.retry_after_s:
            raise ValueError(f"retry_after_s={self.retry_after_s} has no environment variable; it is always "
                             f"{EdgeLimits.retry_after_s}")
        own = EdgeLimits.from_env({})
        settings = {
            "HEADER_TIMEOUT_S": (self.header_timeout_s, own.header_timeout_s),
            "BODY_TIMEOUT_S": (self.body_timeout_s, own.body_timeout_s),
            "KEEPALIVE_TIMEOUT_S": (self.keepalive_timeout_s, own.keepalive_timeout_s),
            "MAX_CONNECTIONS": (self.max_connections, own.max_connections),
        }
        # repr() of a float reads back as the same float.
        env = {name: repr(value) for name, (value, default) in settings.items() if value != default}
        if not self.fast_lane:
            env["HTTP_FAST_LANE"] = "false"
        return env


def raise_descriptor_limit(log: logging.Logger, max_connections: int) -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit and log both; warn if the cap does not fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:  # e.g. a hard limit of infinity some kernels refuse
            log.warning("could not raise the descriptor limit from %d to %d: %s", soft, hard, exc)
    new_soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    log.info("descriptor limit: soft %d (was %d), hard %d; at most %d client connections",
             new_soft, soft, hard, max_connections)
    if max_connections + RESERVED_DESCRIPTORS > new_soft:
        log.warning("MAX_CONNECTIONS=%d leaves under %d spare descriptors (soft limit %d): a flood may hit EMFILE",
                    max_connections, RESERVED_DESCRIPTORS, new_soft)
    return new_soft, hard
