"""What one capacity step measures, and the CPU budgets it runs under.

A configuration (N shards behind the gateway, or one shard at a CPU budget)
is driven at a fixed rate for one step. The step passes when it sustained
the rate as docs/internals/design.md §6 defines capacity (>= 95 % of the
offered orders answered 200, the client p99 and every shard's server-side
p99 under the bar) and within ASR 2's error-rate bar (< 1 % errors, shed
orders included): a rate at which the gateway sheds more than that is one at
which ASR 2 would fail, so it is not one a configuration sustains.
The client-side evidence leaves out the step's first seconds (connections
and caches warming); the shards' p99s, their CPU and their counters come
from their own ``/metrics`` pages, ``/proc`` and the cgroups' counters, read
before and after the step only, so nothing the harness reads lands inside a
step. A failing step names what saturated: the busiest process as a share
of its budget (and the kernel's throttling count), the matcher queue, the
load generator itself, or the machine's cores.

``matchlab.experiment.capacity_search`` runs the steps; ``capacity_fit``
turns them into capacities.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields

import psutil

from matchlab.experiment.registry import MAX_ERROR_RATIO, P99_BAR_S
from matchlab.observe.histograms import Buckets
from matchlab.promtext import bucket_delta, counter_total, histogram_buckets, scrape
from matchlab.topology import SCALING_CPU_PER_2_CORES

BAR_S = P99_BAR_S
MIN_ACHIEVED = 0.95
MAX_ERRORS = MAX_ERROR_RATIO
# A failing step whose shards took in less than this share of the offered rate fell behind all along: its
# throughput is what the configuration tops out at (the Universal Scalability Law's X(N)). Just above a knee
# the gateway sheds in bursts and keeps up in between, so a step there shows less than the top.
OVERLOADED = 0.9
# The capacities the scaling ratio reads: capacity(3) / (3 x capacity(1)); any others only feed the USL fit.
RATIO_SHARDS = (1, 3)
SATURATED = 0.9  # a process using 90 % of its budget is saturated
MACHINE_SATURATED = 0.9  # ... and a machine whose cores are 90 % busy
# What set a knee, when it was not the system under test: the capacity then measured something else.
LIMITED_BY_LOADGEN = "the load generator itself"
LIMITED_BY_MACHINE = "the machine's cores"


@dataclass(frozen=True)
class Budgets:
    """CPUs per shard and for the gateway while capacities are measured.

    ``max_shards`` and ``cores`` say what the budgets were chosen for (0: not said), for the report.
    """

    shard_cpu: float
    gateway_cpu: float
    max_shards: int = 0
    cores: int = 0

    @classmethod
    def for_machine(cls, max_shards: int, cores: int) -> Budgets:
        """The topology's per-2-core budgets scaled with ``cores``; the shards' share split over ``max_shards``.

        The per-shard budget depends on K (the largest configuration) alone, never on N, so every
        configuration N = 1..K gives each shard the same CPU and N = K still fits the machine.
        """
        if max_shards < 1 or cores < 1:
            raise ValueError(f"budgets need at least one shard and one core, got {max_shards} shards, {cores} cores")
        factor = cores / 2
        # To the millicore, rounded down so K of them never exceed the shards' share.
        per_shard = math.floor(round(SCALING_CPU_PER_2_CORES["shards"] * factor / max_shards * 1000, 6)) / 1000
        return cls(per_shard, round(SCALING_CPU_PER_2_CORES["gateway"] * factor, 3), max_shards, cores)

    def for_service(self, name: str) -> float | None:
        if name.startswith("me-shard-"):
            return self.shard_cpu
        return self.gateway_cpu if name == "edge-gateway" else None

    def total(self, shards: int) -> float:
        """CPUs the budgeted services of an ``shards``-shard configuration may use together."""
        return shards * self.shard_cpu + self.gateway_cpu

    def describe(self) -> str:
        text = f"{self.shard_cpu:g} CPU per shard, {self.gateway_cpu:g} CPU for the gateway"
        if self.max_shards and self.cores:
            text += (f" (the same per shard for N = 1..{self.max_shards}; {self.total(self.max_shards):g} of "
                     f"{self.cores} cores at N = {self.max_shards})")
        return text


@dataclass
class Step:
    rate: float  # orders/s offered
    passed: bool
    achieved: float  # answered 200 / scheduled, in the step's evidence window
    error_ratio: float  # ... errors and drops / scheduled there
    client_p99_ms: float  # ... and the client p99 there
    server_p99_ms: float | None  # the worst shard's p99 over the whole step (its pages, read before and after)
    cpu_share: dict[str, float] = field(default_factory=dict)  # service -> CPU used / budget (or cores)
    throttled: dict[str, float] = field(default_factory=dict)  # service -> share of periods throttled
    queue_fill: float = 0.0
    loadgen_cpu: float = 0.0  # CPUs the load generator used
    schedule_lag_p99_ms: float = 0.0
    machine_busy: float = 0.0  # share of all the machine's cores busy (any process), 0 when not measured
    others_cpu: dict[str, float] = field(default_factory=dict)  # unbudgeted services (broker, Prometheus) -> CPUs
    config: str = ""  # which configuration's curve the step belongs to ("N=3", "0.2 CPU")
    shards: int = 0  # shards the load was spread over
    shard_cpu: float = 0.0  # each shard's CPU budget during the step
    stage: str = ""  # "bracket", or "round k" of the fixed-rate rounds
    seconds: float = 0.0  # from the schedule's start to the last answer (the step's length plus the slowest answer)
    excluded_s: float = 0.0  # the first seconds, left out of the client-side evidence
    orders: dict[str, float] = field(default_factory=dict)  # shard -> orders it accepted in the step
    matches: float = 0.0  # fills the shards made in the step
    cpu_used: dict[str, float] = field(default_factory=dict)  # budgeted service -> CPUs it used over ``seconds``
    snapshots: list[str] = field(default_factory=list)  # shards whose snapshot, due within it, was taken before it

    @property
    def throughput(self) -> float:
        """Orders/s the shards accepted over the step, its drain included: what an overloaded step could do."""
        return sum(self.orders.values()) / self.seconds if self.seconds else 0.0

    @property
    def overloaded(self) -> bool:
        """It failed because the configuration fell behind the offered rate, not from a stall."""
        return not self.passed and self.seconds > 0 and self.throughput < OVERLOADED * self.rate

    def budgeted_saturated(self) -> bool | None:
        """Whether a budgeted process used >= 90 % of its budget; None where CPU was not measured."""
        return any(share >= SATURATED for share in self.cpu_share.values()) if self.cpu_share else None

    def why_not(self) -> str:
        reasons = []
        if self.achieved < MIN_ACHIEVED:
            reasons.append(f"{self.achieved:.1%} answered")
        if self.error_ratio >= MAX_ERRORS:
            reasons.append(f"{self.error_ratio:.1%} errors or shed")
        if self.client_p99_ms >= BAR_S * 1000:
            reasons.append(f"client p99 {self.client_p99_ms:.0f} ms")
        if self.server_p99_ms is not None and self.server_p99_ms >= BAR_S * 1000:
            reasons.append(f"server p99 {self.server_p99_ms:.0f} ms")
        return ", ".join(reasons)

    def to_dict(self) -> dict:
        return {**asdict(self), "throughput": self.throughput, "overloaded": self.overloaded}

    @classmethod
    def from_dict(cls, doc: dict) -> Step:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})


def foreign_limit(step: Step) -> str:
    """LIMITED_BY_LOADGEN or LIMITED_BY_MACHINE when that, not a budgeted service, failed the step; else ""."""
    if step.schedule_lag_p99_ms > 50:
        return LIMITED_BY_LOADGEN
    if not step.budgeted_saturated() and step.queue_fill <= 0.01 and step.machine_busy >= MACHINE_SATURATED:
        return LIMITED_BY_MACHINE
    return ""


def bottleneck(step: Step, budgets: Budgets | None) -> str:
    """What saturated first in a failing step, from the evidence gathered in it."""
    lg = f"the load generator used {step.loadgen_cpu:.2f} CPU (schedule lag p99 {step.schedule_lag_p99_ms:.1f} ms)"
    if step.machine_busy:
        lg += f"; the machine's cores {step.machine_busy:.0%} busy"
    if step.others_cpu:
        lg += " (" + ", ".join(f"{k} {v:.2f} CPU" for k, v in sorted(step.others_cpu.items())) + ")"
    limit = foreign_limit(step)
    if limit == LIMITED_BY_LOADGEN:
        return f"{LIMITED_BY_LOADGEN}: {lg}"
    if step.queue_fill > 0.01:
        return f"a matcher queue ({step.queue_fill:.0%} full)"
    if step.cpu_share:
        name, share = max(step.cpu_share.items(), key=lambda kv: kv[1])
        budget = budgets.for_service(name) if budgets else None
        of = f"its {budget:g}-CPU budget" if budget else "a core"
        others = ", ".join(f"{k} {v:.0%}" for k, v in sorted(step.cpu_share.items()) if k != name) or "none budgeted"
        throttled = step.throttled.get(name)
        extra = f", throttled in {throttled:.0%} of periods" if throttled else ""
        if share >= SATURATED:
            return f"{name} at {share:.0%} of {of}{extra} (others: {others}); {lg}"
        where = (f"{LIMITED_BY_MACHINE}, shared with processes outside the budgets"
                 if limit == LIMITED_BY_MACHINE else "a shared stage: the broker or the network path")
        return f"no process saturated (busiest {name} at {share:.0%} of {of}{extra}; others: {others}); {lg}: {where}"
    return lg


@dataclass(frozen=True)
class ShardPage:
    """Counters read from one shard's /metrics page."""

    buckets: dict[float, float]
    ring: float
    orders: float = 0.0  # orders accepted since the shard started
    matches: float = 0.0


def read_shard(metrics_url: str) -> ShardPage:
    text = scrape(metrics_url)
    ring = 0.0
    for line in text.splitlines():
        if line.startswith("me_ringbuffer_utilization_ratio"):
            ring = float(line.rsplit(" ", 1)[1])
    return ShardPage(histogram_buckets(text, "me_match_duration_seconds"), ring,
                     counter_total(text, "me_orders_received"), counter_total(text, "me_matches"))


def server_p99_ms(before: Sequence[ShardPage], after: Sequence[ShardPage]) -> float | None:
    worst = None
    for b, a in zip(before, after):
        delta = bucket_delta(a.buckets, b.buckets)
        pairs = [(le, v) for le, v in delta.items()]
        if not pairs or not any(math.isinf(le) for le, _ in pairs):
            continue
        q = Buckets.from_pairs(pairs).quantile(0.99)
        if q is not None:
            worst = q if worst is None else max(worst, q)
    return None if worst is None else worst * 1000


def busy_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot: busy is everything but idle and I/O wait.

    Time stolen by a hypervisor counts as busy: those cycles were not ours to use.
    """
    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)  # Linux counts guest time in user too
    return total - idle, total


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds of each service: its process and the processes it started (a gateway's workers)."""
    out = {}
    for name, pid in pids.items():
        try:
            process = psutil.Process(pid)
            t = process.cpu_times()
            out[name] = t.user + t.system + t.children_user + t.children_system  # children it has reaped
            for child in process.children(recursive=True):
                try:
                    c = child.cpu_times()
                    out[name] += c.user + c.system
                except psutil.Error:
                    pass  # it just ended; its time moves to children_* once reaped
        except psutil.Error:
            pass
    return out

