"""TCP ports on this machine: one free right now, or whether one is taken.

A leaf module: the services (the gateway's worker processes) and the harness alike use it without
importing each other.
"""

from __future__ import annotations

import socket
from collections.abc import Collection

# A port handed out is not bound until the service it was meant for starts, and until then the OS
# offers it again: two services of one stack given one port answer each other's requests.
_handed_out: set[int] = set()
ATTEMPTS = 256


def offered_port(host: str) -> int:
    """The port the OS offers for a bind to port 0 on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_port(host: str = "127.0.0.1", avoid: Collection[int] = ()) -> int:
    """A port the OS says is free right now on ``host``, never one this process handed out before or in ``avoid``."""
    for _ in range(ATTEMPTS):
        port = offered_port(host)
        if port not in _handed_out and port not in avoid:
            _handed_out.add(port)
            return port
    raise OSError(f"no free TCP port on {host} after {ATTEMPTS} tries that was not already handed out")


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
        return False
