"""CPU isolation for a comparison: the system under test on CPUs of its own, everything else on the rest.

A relative criterion compares one shard's tail latency between arms; any
other process that wakes on the shard's CPU (the load generator, the broker,
Prometheus, the harness itself) puts its own episodes into that tail. With
cgroup cpusets (root, v1 or v2) the shards under test get the last CPUs of
the machine, one each, and every other process of the run shares the first
ones. Where the machine has too few CPUs for that (fewer than the shards
under test plus one) or cpusets are not writable, nothing is moved and
``Isolation.describe()`` says what shared what, for the verdict.

Each run makes ``matchlab-<run>-cpusets/{sut,rest}``; ``close()`` hands every
process back to the root set and removes what it made.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _hierarchy(root: Path) -> tuple[str, Path] | None:
    if (root / "cgroup.controllers").exists() and "cpuset" in (root / "cgroup.controllers").read_text().split():
        return "v2", root
    if (root / "cpuset" / "cpuset.cpus").exists():
        return "v1", root / "cpuset"
    return None


def _pids_of(pid: int) -> list[int]:
    """A process and the processes it started (a gateway's workers)."""
    try:
        return [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
    except psutil.Error:
        return []


@dataclass
class Isolation:
    """Who ran where during a comparison, in words for the verdict."""

    isolated: bool
    sut: dict[str, str] = field(default_factory=dict)  # service -> CPUs
    rest: str = ""  # CPUs of everything else
    others: list[str] = field(default_factory=list)
    why_not: str = ""

    def describe(self) -> str:
        if not self.isolated:
            return f"not isolated ({self.why_not}): the system under test shared the machine's CPUs with " + (
                ", ".join(self.others) or "the harness")
        sut = "; ".join(f"{name} alone on CPU {cpus}" for name, cpus in self.sut.items())
        return f"{sut}; {', '.join(self.others) or 'the harness'} on CPU {self.rest}"


class CpuSets:
    def __init__(self, run: str, root: Path = CGROUP_ROOT, cpus: int | None = None) -> None:
        self.found = _hierarchy(root)
        self.run = run
        self.cpus = cpus if cpus is not None else (os.cpu_count() or 1)
        self._created: list[Path] = []

    def available(self) -> str:
        """Empty when cpusets can be set here, else why not (one line)."""
        if self.found is None:
            return f"no cgroup cpuset controller under {CGROUP_ROOT}"
        if not os.access(self.found[1], os.W_OK):
            return f"{self.found[1]} is not writable (cpusets need root)"
        return ""

    def isolate(self, sut: dict[str, int], others: dict[str, int], harness: bool = True) -> Isolation:
        """Pin each process of ``sut`` (name -> PID) to a CPU of its own, ``others`` and (``harness``) this
        process to the remaining CPUs. Moves nothing when it cannot, and says why."""
        names = sorted(others) + (["the harness and load generator"] if harness else [])
        why = self.available() or (f"{self.cpus} CPUs: the system under test needs {len(sut)} of its own and one "
                                   f"more for the rest" if self.cpus < len(sut) + 1 else "")
        if why:
            return Isolation(False, others=names, why_not=why)
        first = self.cpus - len(sut)
        rest = f"0-{first - 1}" if first > 1 else "0"
        placed: dict[str, str] = {}
        try:
            for i, (name, pid) in enumerate(sorted(sut.items())):
                cpu = str(first + i)
                self._place(f"sut-{name}", cpu, _pids_of(pid))
                placed[name] = cpu
            self._place("rest", rest, [p for pid in others.values() for p in _pids_of(pid)] +
                        ([os.getpid()] if harness else []))
        except OSError as exc:
            self.close()
            return Isolation(False, others=names, why_not=f"cpusets could not be written: {exc}")
        log.info("CPU isolation: %s", placed)
        return Isolation(True, placed, rest, names)

    def pin(self, groups: dict[str, tuple[str, dict[str, int]]], harness: str | None = None) -> str:
        """Put each group's processes (group -> (CPUs such as "1" or "0-2", name -> PID)) and the processes they
        started on those CPUs, in the order given, and this process alone (not its children: the stack's
        services may be among them) in group ``harness``. Empty when done; else why not, with nothing moved."""
        why = self.available()
        if why:
            return why
        try:
            for group, (cpus, pids) in groups.items():
                self._place(group, cpus, [p for pid in pids.values() for p in _pids_of(pid)] +
                            ([os.getpid()] if group == harness else []))
        except OSError as exc:
            self.close()
            return f"cpusets could not be written: {exc}"
        log.info("CPU placement: %s", {group: cpus for group, (cpus, _) in groups.items()})
        return ""

    def _parent(self) -> Path:
        assert self.found is not None
        version, base = self.found
        parent = base / f"matchlab-{self.run}-cpusets"
        if not parent.exists():
            parent.mkdir()
            self._created.append(parent)
            if version == "v1":  # a v1 cpuset must have CPUs and memory nodes before it takes tasks
                (parent / "cpuset.cpus").write_text((base / "cpuset.cpus").read_text())
                (parent / "cpuset.mems").write_text((base / "cpuset.mems").read_text())
            else:
                (base / "cgroup.subtree_control").write_text("+cpuset")
                (parent / "cgroup.subtree_control").write_text("+cpuset")
        return parent

    def _place(self, group: str, cpus: str, pids: list[int]) -> None:
        path = self._parent() / group
        if not path.exists():
            path.mkdir()
            self._created.append(path)
        (path / "cpuset.cpus").write_text(cpus)
        if self.found and self.found[0] == "v1":
            (path / "cpuset.mems").write_text((self._parent() / "cpuset.mems").read_text())
        for pid in pids:
            try:
                (path / "cgroup.procs").write_text(str(pid))
            except ProcessLookupError:
                pass  # it ended meanwhile

    def close(self) -> None:
        """Every process back to the root set, then the groups made here removed, deepest first."""
        if self.found is None:
            return
        root_procs = self.found[1] / "cgroup.procs"
        for path in reversed(self._created):
            try:
                for pid in (path / "cgroup.procs").read_text().split():
                    try:
                        root_procs.write_text(pid)
                    except ProcessLookupError:
                        pass
            except OSError:
                pass
        for path in reversed(self._created):
            try:
                path.rmdir()
            except OSError as exc:
                log.warning("cpuset %s not removed: %s", path, exc.strerror)
        self._created.clear()
