"""Scaling judged from capacity: the highest rate N shards sustain behind the gateway, under equal CPU budgets.

For N = 1, 2, 3 the load is spread over the symbols of the first N shards
(the others idle) through the gateway, with every shard held to the same
CPU budget (cgroup quotas on the local backend) and the gateway to its own.
A step passes when the load left on schedule (>= 95 % of the offered rate
answered 200, < 1 % errors) and both the client p99 and every shard's
server-side p99 stay under the bar; rates grow by half until a step fails,
then bisection narrows the knee to within 5 %. A second pass, in reverse
order of N, searches again near each knee: the two passes and each pass's
bracket (the knee passed, the next rate failed) give every capacity a
range, and the scaling ratio an interval that decides PASS or FAIL only
when it lies wholly on one side of the bar. At each knee the first
failing step names what saturated: the busiest process as a share of its
budget (and the kernel's throttling count), the matcher queue, or the load
generator itself.

Server-side p99s and CPU come from the services' own ``/metrics`` pages and
``/proc``, read before and after each step, so a step needs no scrape wait.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import psutil

from matchlab.observe.histograms import Buckets
from matchlab.promtext import bucket_delta, histogram_buckets, scrape
from matchlab.topology import SCALING_CPU_PER_2_CORES

BAR_S = 0.2
MIN_ACHIEVED = 0.95
MAX_ERRORS = 0.01
GROWTH = 1.5
KNEE_PRECISION = 0.05
MAX_STEPS = 14
# A first pass for N > 1 starts at this share of N x the one-shard knee (or higher): one growth step below
# the knee of a configuration that scales at 0.9-1.0 of linear.
START_FRACTION_OF_LINEAR = 0.65
# The confirming pass starts below the first pass's knee and climbs in finer steps.
CONFIRM_START = 0.9
CONFIRM_GROWTH = 1.1
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
    rate: float
    passed: bool
    achieved: float  # answered 200 / scheduled
    error_ratio: float
    client_p99_ms: float
    server_p99_ms: float | None
    cpu_share: dict[str, float] = field(default_factory=dict)  # service -> CPU used / budget (or cores)
    throttled: dict[str, float] = field(default_factory=dict)  # service -> share of periods throttled
    queue_fill: float = 0.0
    loadgen_cpu: float = 0.0  # CPUs the load generator used
    schedule_lag_p99_ms: float = 0.0
    machine_busy: float = 0.0  # share of all the machine's cores busy (any process), 0 when not measured
    others_cpu: dict[str, float] = field(default_factory=dict)  # unbudgeted services (broker, Prometheus) -> CPUs
    retried: bool = False  # failed with nothing saturated, so the search ran the rate again (the retry counts)

    def budgeted_saturated(self) -> bool | None:
        """Whether a budgeted process used >= 90 % of its budget; None where CPU was not measured."""
        return any(share >= SATURATED for share in self.cpu_share.values()) if self.cpu_share else None

    def why_not(self) -> str:
        reasons = []
        if self.achieved < MIN_ACHIEVED:
            reasons.append(f"{self.achieved:.0%} answered")
        if self.error_ratio >= MAX_ERRORS:
            reasons.append(f"{self.error_ratio:.1%} errors")
        if self.client_p99_ms >= BAR_S * 1000:
            reasons.append(f"client p99 {self.client_p99_ms:.0f} ms")
        if self.server_p99_ms is not None and self.server_p99_ms >= BAR_S * 1000:
            reasons.append(f"server p99 {self.server_p99_ms:.0f} ms")
        return ", ".join(reasons)


@dataclass
class Pass:
    """One search for one configuration's knee."""

    knee: float | None  # the highest rate that passed; None: even the first step failed
    ceiling: float | None  # the lowest failing rate above the knee; None: nothing failed above it
    steps: list[Step]
    bottleneck: str  # what saturated in the first failing step above the knee
    foreign_limit: str = ""  # LIMITED_BY_*: the knee was set outside the system under test ("" if not)

    @classmethod
    def from_steps(cls, knee: float | None, steps: list[Step], budgets: Budgets | None) -> Pass:
        above = [st for st in steps if not st.passed and not st.retried and (knee is None or st.rate > knee)]
        first_bad = min(above, key=lambda st: st.rate) if above else None
        if first_bad is None:
            return cls(knee, None, steps, "nothing saturated within the search")
        return cls(knee, first_bad.rate, steps, bottleneck(first_bad, budgets), foreign_limit(first_bad))


@dataclass
class Capacity:
    """A configuration's capacity over one or more passes: the mean knee, and the range the passes allow."""

    shards: int
    passes: list[Pass]

    @property
    def knees(self) -> list[float | None]:
        return [p.knee for p in self.passes]

    @property
    def knee(self) -> float | None:
        if not self.passes or any(k is None for k in self.knees):
            return None
        return sum(self.knees) / len(self.passes)

    @property
    def exhausted(self) -> bool:
        """A pass ran out of steps before any step above its knee failed: the capacity has no upper bound."""
        return any(p.ceiling is None for p in self.passes)

    @property
    def bounds(self) -> tuple[float, float] | None:
        """Lowest knee and highest ceiling over the passes (None: a pass has no knee or no ceiling)."""
        if self.knee is None or self.exhausted:
            return None
        return min(self.knees), max(p.ceiling for p in self.passes)

    def to_dict(self) -> dict:
        return {"shards": self.shards, "knee": self.knee, "bounds": self.bounds, "exhausted": self.exhausted,
                "bottleneck": self.passes[0].bottleneck if self.passes else "not searched",
                "passes": [asdict(p) for p in self.passes]}


def ratio_interval(one: tuple[float, float], many: tuple[float, float], n: int) -> tuple[float, float]:
    """Where capacity(n) / (n x capacity(1)) can lie, given each capacity's (low, high) range."""
    return many[0] / (n * one[1]), many[1] / (n * one[0])


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


def knee_search(run_step: Callable[[float], Step], start_rate: float, growth: float = GROWTH,
                precision: float = KNEE_PRECISION) -> tuple[float | None, list[Step], bool]:
    """Grow the rate by ``growth`` until a step fails, then bisect until the knee is known within ``precision``.

    A step that fails while no budgeted process was saturated is run once more before it counts: the
    budgets set these knees, so such a failure is a stall from outside (another load on the machine) or a
    shared stage; a real limit fails again. One such stall at N = 3 of S1 lowered that knee by a fifth.
    """
    steps: list[Step] = []
    good, bad = None, None
    rate = start_rate
    while len(steps) < MAX_STEPS:
        step = run_step(rate)
        if not step.passed and step.budgeted_saturated() is False and len(steps) + 1 < MAX_STEPS:
            step.retried = True
            steps.append(step)
            step = run_step(rate)
        steps.append(step)
        if step.passed:
            good = rate
            if bad is None:
                rate *= growth
        else:
            bad = rate
        if bad is not None:
            low = good if good is not None else 0.0
            if good is not None and (bad - good) / good <= precision:
                break
            if good is None and bad <= start_rate / growth ** 3:
                break  # it fails even far below where it started
            rate = (low + bad) / 2 if good is not None else bad / growth
    exhausted = bad is None
    return good, steps, exhausted


@dataclass(frozen=True)
class ShardPage:
    """Counters read from one shard's /metrics page."""

    buckets: dict[float, float]
    ring: float


def read_shard(metrics_url: str) -> ShardPage:
    text = scrape(metrics_url)
    ring = 0.0
    for line in text.splitlines():
        if line.startswith("me_ringbuffer_utilization_ratio"):
            ring = float(line.rsplit(" ", 1)[1])
    return ShardPage(histogram_buckets(text, "me_match_duration_seconds"), ring)


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

