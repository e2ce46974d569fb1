"""Scaling judged from capacity: the highest rate N shards sustain behind the gateway, under equal CPU budgets.

For N = 1, 2, 3 the load is spread over the symbols of the first N shards
(the others idle) through the gateway, with every shard held to the same
CPU budget (cgroup quotas on the local backend) and the gateway to its own.
A step passes when the load left on schedule (>= 95 % of the offered rate
answered 200, < 1 % errors) and both the client p99 and every shard's
server-side p99 stay under the bar; rates grow by half until a step fails,
then bisection narrows the knee to within 5 %. At each knee the first
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
SATURATED = 0.9  # a process using 90 % of its budget is saturated


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
class Capacity:
    shards: int
    knee: float | None  # orders/s; None: even the first step failed
    steps: list[Step]
    bottleneck: str
    exhausted: bool = False  # the search ran out of steps before a step failed

    def to_dict(self) -> dict:
        return asdict(self)


def bottleneck(step: Step, budgets: Budgets | None) -> str:
    """What saturated first in a failing step, from the evidence gathered in it."""
    lg = f"the load generator used {step.loadgen_cpu:.2f} CPU (schedule lag p99 {step.schedule_lag_p99_ms:.1f} ms)"
    if step.schedule_lag_p99_ms > 50:
        return f"the load generator itself: {lg}"
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
        return (f"no process saturated (busiest {name} at {share:.0%} of {of}{extra}; others: {others}); {lg}: "
                "the machine's shared cores or the broker")
    return lg


def knee_search(run_step: Callable[[float], Step], start_rate: float) -> tuple[float | None, list[Step], bool]:
    """Grow the rate by half until a step fails, then bisect to within ``KNEE_PRECISION``."""
    steps: list[Step] = []
    good, bad = None, None
    rate = start_rate
    while len(steps) < MAX_STEPS:
        step = run_step(rate)
        steps.append(step)
        if step.passed:
            good = rate
            if bad is None:
                rate *= GROWTH
        else:
            bad = rate
        if bad is not None:
            low = good if good is not None else 0.0
            if good is not None and (bad - good) / good <= KNEE_PRECISION:
                break
            if good is None and bad <= start_rate / GROWTH ** 3:
                break  # it fails even far below where it started
            rate = (low + bad) / 2 if good is not None else bad / GROWTH
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


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    out = {}
    for name, pid in pids.items():
        try:
            t = psutil.Process(pid).cpu_times()
            out[name] = t.user + t.system
        except psutil.Error:
            pass
    return out

