"""Readiness probes: small objects whose ``check()`` returns truthy once a service is ready."""

from __future__ import annotations

import socket
import urllib.request
from dataclasses import dataclass
from typing import Protocol

from matchlab.ports import free_port, port_in_use  # noqa: F401 - where the stack's callers look for them

PROBE_TIMEOUT_S = 1.0


class Probe(Protocol):
    def check(self) -> bool: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class HttpProbe:
    """Ready when GET ``url`` answers with ``status``."""

    url: str
    status: int = 200

    def check(self) -> bool:
        with urllib.request.urlopen(self.url, timeout=PROBE_TIMEOUT_S) as resp:
            return resp.status == self.status

    def describe(self) -> str:
        return f"HTTP {self.status} from {self.url}"


@dataclass(frozen=True)
class PortProbe:
    """Ready when a TCP connection to ``host:port`` succeeds."""

    host: str
    port: int

    def check(self) -> bool:
        with socket.create_connection((self.host, self.port), timeout=PROBE_TIMEOUT_S):
            return True

    def describe(self) -> str:
        return f"TCP connect to {self.host}:{self.port}"
