"""A backend that satisfies ``matchlab.stack.backend.Backend`` and runs nothing: for tests of what reads a stack."""

from __future__ import annotations

from pathlib import Path

from matchlab.stack.spec import Endpoints, Topology


class FakeBackend:
    name = "fake"

    def __init__(self, endpoints: Endpoints | None = None, load_driver=None) -> None:
        self.endpoints = endpoints
        self.driver = load_driver
        self.faults: list[tuple[str, str]] = []  # (fault, service) in the order asked for

    def start(self, topology: Topology, run_dir: Path) -> Endpoints:
        return self.endpoints

    def stop(self) -> None:
        self.faults.append(("stop", ""))

    def load_driver(self):
        return self.driver

    def processes(self) -> dict:
        return {}

    def pause_broker(self) -> None:
        self.faults.append(("pause", "broker"))

    def resume_broker(self) -> None:
        self.faults.append(("resume", "broker"))

    def kill_service(self, name: str) -> None:
        self.faults.append(("kill", name))

    def restart_service(self, name: str) -> None:
        self.faults.append(("restart", name))

    def log_tails(self) -> dict[str, str]:
        return {}

    def facts(self) -> dict[str, str]:
        return {"backend": "fake"}
