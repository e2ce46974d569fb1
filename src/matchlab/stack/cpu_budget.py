"""CPU budgets for local processes: the same kind of limit Kubernetes puts on a container.

A budget of 0.5 CPU means a CFS quota of half of every period. Kubernetes
uses 100 ms periods, which lets a busy process run flat out for 50 ms and
then stalls it for 50 ms; here the period is 10 ms, so throttling adds at
most a few milliseconds to a request. Works with cgroup v2 (``cpu.max``)
and v1 (``cpu.cfs_quota_us``), as root or wherever the hierarchy is
writable; ``CpuBudgets.available()`` says why not otherwise, so a scaling
verdict can say its budgets were not enforced.

Each run gets its own group (``matchlab-<run>``) with one child per
service; ``close()`` moves nothing back and removes only the groups this
object created (a group is removed once its processes have exited).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 10_000
MIN_QUOTA_US = 1_000  # the kernel refuses shorter quotas


def quota_for(cpus: float) -> tuple[int, int]:
    """(period, quota) in µs for ``cpus``: 10 ms periods, longer only where the quota would fall under the
    kernel's 1 ms minimum (below 0.1 CPU), so a small budget is enforced as stated rather than rounded up."""
    period = max(PERIOD_US, math.ceil(MIN_QUOTA_US / cpus))
    return period, max(MIN_QUOTA_US, round(cpus * period))


@dataclass(frozen=True)
class Throttling:
    periods: int
    throttled_periods: int
    throttled_s: float

    @property
    def ratio(self) -> float:
        return self.throttled_periods / self.periods if self.periods else 0.0


def _hierarchy(root: Path) -> tuple[str, Path] | None:
    """("v2", root) or ("v1", root/cpu) for the first writable CPU controller found."""
    if (root / "cgroup.controllers").exists() and "cpu" in (root / "cgroup.controllers").read_text().split():
        return "v2", root
    if (root / "cpu" / "cpu.cfs_quota_us").exists():
        return "v1", root / "cpu"
    return None


def _descendants(pid: int) -> list[int]:
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


class CpuBudgets:
    def __init__(self, run: str, root: Path = CGROUP_ROOT) -> None:
        self.found = _hierarchy(root)
        self.run = run
        self._created: list[Path] = []

    def available(self) -> str:
        """Empty when budgets can be enforced here, else why not (one line)."""
        if self.found is None:
            return f"no cgroup CPU controller under {CGROUP_ROOT} (not Linux, or not mounted)"
        base = self.found[1]
        if not os.access(base, os.W_OK):
            return f"{base} is not writable: run as root or in a delegated cgroup (systemd-run --user --scope)"
        return ""

    @property
    def version(self) -> str:
        return self.found[0] if self.found else "none"

    def _group(self, service: str) -> Path:
        assert self.found is not None
        run_dir = self.found[1] / f"matchlab-{self.run}"
        for path in (run_dir, run_dir / service):
            if not path.exists():
                path.mkdir()
                self._created.append(path)
        if self.found[0] == "v2":
            # A v2 parent must hand the cpu controller down before its children can use it.
            (run_dir / "cgroup.subtree_control").write_text("+cpu")
        return run_dir / service

    def limit(self, service: str, pid: int, cpus: float) -> Path:
        """Confine ``pid`` (and the threads and children it starts later) to ``cpus`` CPUs."""
        if cpus <= 0:
            raise ValueError(f"a CPU budget must be positive, got {cpus} for {service}")
        why = self.available()
        if why:
            raise PermissionError(why)
        group = self._group(service)
        period, quota = quota_for(cpus)
        if self.version == "v2":
            (group / "cpu.max").write_text(f"{quota} {period}")
        else:
            (group / "cpu.cfs_period_us").write_text(str(period))
            (group / "cpu.cfs_quota_us").write_text(str(quota))
        (group / "cgroup.procs").write_text(str(pid))  # the whole process: every thread, and those it starts later
        for child in _descendants(pid):  # and the processes it already started (a gateway's workers)
            try:
                (group / "cgroup.procs").write_text(str(child))
            except ProcessLookupError:
                pass
        log.info("CPU budget: %s (PID %d) limited to %.2f CPU (cgroup %s, %s)", service, pid, cpus, self.version, group)
        return group

    def throttling(self, service: str) -> Throttling | None:
        """The kernel's own count of periods the service's group hit its quota in."""
        if self.found is None:
            return None
        stat = self.found[1] / f"matchlab-{self.run}" / service / "cpu.stat"
        try:
            fields = dict(line.split() for line in stat.read_text().splitlines())
        except OSError:
            return None
        periods, throttled = int(fields.get("nr_periods", 0)), int(fields.get("nr_throttled", 0))
        seconds = int(fields["throttled_usec"]) / 1e6 if "throttled_usec" in fields else int(
            fields.get("throttled_time", 0)) / 1e9
        return Throttling(periods, throttled, seconds)

    def close(self) -> None:
        """Hand every process back to the root group, then remove the groups this object made, deepest first."""
        for path in reversed(self._created):
            try:
                for pid in (path / "cgroup.procs").read_text().split():
                    (self.found[1] / "cgroup.procs").write_text(pid)
            except OSError:
                pass  # a process that just ended
        for path in reversed(self._created):
            try:
                path.rmdir()
            except OSError as exc:
                log.warning("cgroup %s not removed: %s", path, exc.strerror)
        self._created.clear()
