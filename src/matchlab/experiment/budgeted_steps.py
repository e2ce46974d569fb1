"""Capacity steps on a quiet system under test: CPU budgets in force, the budgeted services on CPUs of their own.

``BudgetedServices`` holds every shard and the gateway to its CPU budget
(cgroup quotas) and, where the machine has the cores, pins them to CPUs the
load generator, the broker, Prometheus and the harness do not use (cpusets);
where it has not, it pins what it can and says what shared what (on two
cores the shards get one CPU of their own and the gateway shares the other
with everything else). ``step_runner`` makes the function that runs one step
of a route at a rate and measures it: the shards' pages, ``/proc`` and the
cgroups' counters are read just before the load starts and just after the
last answer; during the step only the load generator (this process, with
its remote write) and Prometheus' own scrapes and rule evaluations run
besides the system under test, alike in every step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

import httpx
from hdrh.histogram import HdrHistogram

from matchlab.experiment import scaling
from matchlab.experiment.record import ExperimentRecord
from matchlab.experiment.runner import ExperimentRunner, Route
from matchlab.loadgen.profile import LoadProfile
from matchlab.loadgen.results import LoadResult, decode_histogram
from matchlab.stack.cpu_budget import PERIOD_US, CpuBudgets
from matchlab.stack.cpusets import CpuSets

GATEWAY = "edge-gateway"
UNBUDGETED = "the load generator and harness (this process), the broker and Prometheus"


@dataclass(frozen=True)
class Placement:
    """Which CPUs the shards, the gateway and everything else get; ``overlap`` says what shares."""

    shards: str
    gateway: str
    rest: str
    overlap: str = ""

    def describe(self) -> str:
        text = f"shards on CPU {self.shards}, the gateway on CPU {self.gateway}, {UNBUDGETED} on CPU {self.rest}"
        return text + (f" ({self.overlap})" if self.overlap else "")


def _cpus(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


def placement(cores: int, shards_cpu: float, gateway_cpu: float) -> Placement | str:
    """Where the budgeted services go on ``cores`` CPUs, given the CPUs all the shards and the gateway may use
    together; a string says why nothing can be separated. The budgeted services take the last CPUs.

    Where the shards fit on CPUs of their own but the gateway does not fit beside them, the gateway may run on
    every CPU: at N = 3 here it uses ~0.4 CPU and the load generator ~0.45, which would fill one CPU between
    them, while the shards leave ~0.4 of theirs unused."""
    together = math.ceil(round(shards_cpu + gateway_cpu, 6))
    if cores >= together + 1:
        sut = _cpus(cores - together, cores - 1)
        return Placement(sut, sut, _cpus(0, cores - together - 1))
    alone = math.ceil(round(shards_cpu, 6))
    if cores >= alone + 1:
        return Placement(_cpus(cores - alone, cores - 1), _cpus(0, cores - 1), _cpus(0, cores - alone - 1),
                         f"the shards and the gateway may use {shards_cpu + gateway_cpu:g} CPU together and this "
                         f"machine has {cores}: the gateway shares CPU {_cpus(cores - alone, cores - 1)} with the "
                         f"shards and CPU {_cpus(0, cores - alone - 1)} with {UNBUDGETED}")
    return f"{cores} CPU(s): too few to give the budgeted services ({shards_cpu + gateway_cpu:g} CPU) their own"


class BudgetedServices:
    """CPU budgets and CPU placement for a run's shards and gateway, undone on exit."""

    def __init__(self, s, r: ExperimentRunner, budgets: scaling.Budgets, cores: int, widest_shard_cpu: float = 0.0):
        self.budgets = budgets
        self.run_id = s.run_id
        running = {name: p.pid for name, p in r.stack.backend.processes().items() if p.pid}
        self.pids = {name: pid for name, pid in running.items() if budgets.for_service(name) is not None}
        self.others = {name: pid for name, pid in running.items() if name not in self.pids}
        self.cgroups = CpuBudgets(s.run_id)
        self.cpusets = CpuSets(s.run_id, cpus=cores)
        self.cores = cores
        self.widest_shard_cpu = max(widest_shard_cpu, budgets.shard_cpu)  # C3 varies the shards' budget
        self.why_not = (self.cgroups.available() if self.pids else
                        f"the {r.stack.backend.name} backend does not expose its processes here")
        self.cpus = ""

    @property
    def enforced(self) -> bool:
        return not self.why_not

    def __enter__(self) -> Self:
        try:
            if self.enforced:
                for name, pid in self.pids.items():
                    self.cgroups.limit(name, pid, self.budgets.for_service(name))
            self.cpus = self._place()
        except BaseException:
            self.close()
            raise
        return self

    def _place(self) -> str:
        shards = {n: pid for n, pid in self.pids.items() if n.startswith("me-shard-")}
        gateway = {n: pid for n, pid in self.pids.items() if n == GATEWAY}
        plan = placement(self.cores, len(shards) * self.widest_shard_cpu,
                         self.budgets.gateway_cpu if gateway else 0.0)
        if isinstance(plan, str):
            return f"not pinned ({plan}): everything shared the machine's CPUs"
        # Everything else first: the services are this process's children, and a group takes a process's
        # children with it; the budgeted services are placed after, where they belong.
        groups = {"rest": (plan.rest, self.others), "shards": (plan.shards, shards)}
        if gateway:
            groups["gateway"] = (plan.gateway, gateway)
        why = self.cpusets.pin(groups, harness="rest")
        if why:
            return f"not pinned ({why}): everything shared the machine's CPUs"
        return plan.describe() if gateway else plan.describe().replace(f", the gateway on CPU {plan.gateway}", "")

    def set_shard_budget(self, cpus: float) -> None:
        """Every shard to ``cpus`` CPUs from now on (the gateway keeps its budget)."""
        self.budgets = scaling.Budgets(cpus, self.budgets.gateway_cpu, self.budgets.max_shards, self.budgets.cores)
        if self.enforced:
            for name, pid in self.pids.items():
                if name.startswith("me-shard-"):
                    self.cgroups.limit(name, pid, cpus)

    def describe(self) -> str:
        budgets = f"{self.budgets.describe()}" + (f" (cgroup {self.cgroups.version}, {PERIOD_US // 1000} ms periods)"
                                                   if self.enforced else f"; NOT enforced: {self.why_not}")
        return f"{budgets}; CPUs: {self.cpus}"

    def close(self) -> None:
        self.cpusets.close()
        self.cgroups.close()

    def __exit__(self, *exc) -> None:
        self.close()


# Journal records an order makes (the order, its fills, the delivery marks), until a shard's own count says.
RECORDS_PER_ORDER = 3.0
SNAPSHOT_MARGIN = 1.25  # a snapshot due within this many times a step's expected records is taken before it
ADMIN_TIMEOUT_S = 30.0


class Snapshots:
    """Each shard's next snapshot, taken between steps when it would fall due inside the next one.

    A shard snapshots its books every ``snapshotEvery`` journal records (50,000: every half minute or so at
    these rates). Under a 0.2-CPU budget that stalls its matcher for a tenth of a second or more, which sheds a
    burst of orders through the gateway and fails whichever step it lands in, whatever the rate: a sixth of S1's
    steps held one. Taken before a step instead, it costs the same CPU and lands in none."""

    def __init__(self, shards: dict[str, str], headers: dict[str, str]) -> None:
        self.urls, self.headers = shards, headers
        self.per_order: dict[str, float] = {}
        self._before: dict[str, dict] = {}

    def _stats(self, shard: str) -> dict:
        resp = httpx.get(f"{self.urls[shard]}/admin/stats", headers=self.headers, timeout=ADMIN_TIMEOUT_S)
        resp.raise_for_status()
        return resp.json()

    def before(self, shards: Sequence[str], orders_each: float) -> list[str]:
        """Take the snapshots due within ``orders_each`` orders per shard; the shards that took one."""
        taken = []
        for shard in shards:
            stats = self._before[shard] = self._stats(shard)
            every = stats.get("snapshotEvery")
            need = self.per_order.get(shard, RECORDS_PER_ORDER) * orders_each * SNAPSHOT_MARGIN
            if every and stats["journalRecords"] - stats["lastSnapshot"] + need >= every:
                resp = httpx.post(f"{self.urls[shard]}/admin/snapshot", headers=self.headers, timeout=ADMIN_TIMEOUT_S)
                if resp.status_code == 200:
                    taken.append(shard)
        return taken

    def after(self, orders: dict[str, float]) -> None:
        """Learn each shard's journal records per order from the step just run."""
        for shard, count in orders.items():
            if count >= 100 and shard in self._before:
                self.per_order[shard] = (self._stats(shard)["journalRecords"] -
                                         self._before[shard]["journalRecords"]) / count


@dataclass(frozen=True)
class Evidence:
    """The client side of a step after its excluded start."""

    achieved: float
    error_ratio: float
    p99_ms: float


def client_evidence(load: LoadResult, excluded_s: float) -> Evidence:
    """Answered share, failed share and p99 over the seconds due at or after ``excluded_s`` (requests count in the
    second they were due, so a late answer still counts where its order was sent)."""
    rows = [t for t in load.timeline if t.second >= excluded_s] or load.timeline
    scheduled = sum(t.scheduled for t in rows)
    failed = sum(sum(t.errors.values()) + t.dropped for t in rows)
    hist: HdrHistogram | None = None
    for t in rows:
        if t.histogram:
            h = decode_histogram(t.histogram)
            hist = h if hist is None else (hist.add(h) or hist)
    p99 = hist.get_value_at_percentile(99) / 1000.0 if hist is not None and hist.get_total_count() else math.inf
    ok = sum(t.ok for t in rows)
    return Evidence(ok / scheduled if scheduled else 0.0, failed / scheduled if scheduled else 0.0, p99)


def step_runner(r: ExperimentRunner, exp: ExperimentRecord, route: Route, services: BudgetedServices):
    """A function (rate, stage, step length, excluded start) -> ``scaling.Step`` for ``route``."""
    ep = r.stack.endpoints
    pages = {sh: ep.shard_metrics[sh] for sh in route.shards}
    n = len(route.shards)
    snapshots = Snapshots(ep.shards, ep.admin_headers)

    def run(rate: float, stage: str, step_s: float, excluded_s: float) -> scaling.Step:
        budgets, cgroups = services.budgets, services.cgroups if services.enforced else None
        snapped = snapshots.before(route.shards, rate * (step_s + 1) / n)
        before = {sh: scaling.read_shard(u) for sh, u in pages.items()}
        cpu0, other0 = scaling.cpu_seconds(services.pids), scaling.cpu_seconds(services.others)
        machine0 = scaling.busy_cpu_seconds()
        thr0 = {name: cgroups.throttling(name) for name in services.pids} if cgroups else {}
        tag = f"N{n}@{rate:.0f}" + (f"/{budgets.shard_cpu:g}cpu" if "cpu" in stage else "")
        phase = r.drive(exp, f"{tag} {stage}", route, LoadProfile.constant(rate, step_s),
                        r.source(route, f"{exp.id}-{n}-{rate:.0f}"), None, marks={"measured": excluded_s}, quiet=True)
        wall = phase.end - phase.start
        after = {sh: scaling.read_shard(u) for sh, u in pages.items()}
        cpu1, other1 = scaling.cpu_seconds(services.pids), scaling.cpu_seconds(services.others)
        machine1 = scaling.busy_cpu_seconds()
        load = phase.load
        # Busy until the last answer: the step plus its slowest answer (overloaded, the last ones wait longest);
        # the run's own wind-down after that (a last remote-write push, closing connections) is no one's work.
        seconds = min(wall, step_s + load.latency_ms["max"] / 1000) if load.latency_ms["count"] else wall
        evidence = client_evidence(load, excluded_s)
        used = {name: (cpu1[name] - cpu0[name]) / seconds for name in cpu1 if name in cpu0} if seconds else {}
        step = scaling.Step(
            rate=rate, passed=False, achieved=evidence.achieved, error_ratio=evidence.error_ratio,
            client_p99_ms=evidence.p99_ms,
            server_p99_ms=scaling.server_p99_ms(list(before.values()), list(after.values())),
            cpu_share={name: u / budgets.for_service(name) for name, u in used.items()},
            queue_fill=max(p.ring for p in after.values()),
            loadgen_cpu=load.cpu_seconds / wall if wall else 0.0,
            schedule_lag_p99_ms=load.schedule_error_ms.get("p99", 0.0),
            machine_busy=(machine1[0] - machine0[0]) / max(machine1[1] - machine0[1], 1e-9),
            others_cpu={name: (other1[name] - other0[name]) / wall for name in other1 if name in other0},
            shards=n, shard_cpu=budgets.shard_cpu, seconds=seconds, excluded_s=excluded_s,
            orders={sh: after[sh].orders - before[sh].orders for sh in pages},
            matches=sum(after[sh].matches - before[sh].matches for sh in pages), cpu_used=used, snapshots=snapped)
        for name, t0 in thr0.items():
            t1 = cgroups.throttling(name)
            if t0 and t1 and t1.periods > t0.periods:
                step.throttled[name] = (t1.throttled_periods - t0.throttled_periods) / (t1.periods - t0.periods)
        step.passed = not step.why_not()
        r.settle(route.shards, wait_for_scrape=False)
        snapshots.after(step.orders)
        return step

    return run
