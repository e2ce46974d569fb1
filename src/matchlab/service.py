"""Shared start-up for the project's services: logging, event loop, config errors."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from matchlab.errors import ConfigError
from matchlab.gcpolicy import keep_full_collections_short

# The GIL hand-off interval bounds how long the journal committer thread waits
# to report a finished fsync while the loop is busy; 5 ms (the default) would
# show up directly in the p99 of every acknowledgement.
GIL_SWITCH_INTERVAL_S = 0.0005
# How long a stopping service may take to finish its requests, and its producer to deliver what it holds.
SHUTDOWN_GRACE_S = 10.0
PRODUCER_FLUSH_S = 10.0


async def serve_until_signalled(server: Any, log: logging.Logger) -> None:
    """Start ``server``, wait for SIGTERM or SIGINT, then let it stop gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    keep_full_collections_short()  # everything start-up made (code, replayed books) lives for the whole run
    await stop.wait()
    log.info("signal received: shutting down")
    await server.stop()


def event_loop_runner() -> Callable[[Coroutine], Any]:
    """uvloop's runner where available (faster HTTP), else asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a pinned dependency
        return asyncio.run
    return uvloop.run


def run_service(name: str, load_config: Callable[[], Any], serve: Callable[[Any], Coroutine]) -> int:
    """Parse config (exit 2 with one line on error), then serve until signalled."""
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = load_config()
    except ConfigError as exc:
        print(f"{name}: configuration error: {exc}", file=sys.stderr)
        return 2
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    try:
        status = event_loop_runner()(serve(config))
    except ConfigError as exc:  # found only when used, e.g. a journal path that cannot be written
        print(f"{name}: configuration error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. port already in use
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    return status if isinstance(status, int) else 0  # a service may end with its own exit status
