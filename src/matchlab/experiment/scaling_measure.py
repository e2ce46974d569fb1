"""The scaling criterion, capacity(3) / (3 x capacity(1)), measured from every step of a run and decided by its interval.

``scaling_measurement`` reads a record's steps (S1's, or C4's) and returns a
``Measurement``: the ratio of the logistic capacities, its bootstrap
interval at the level of the look that stopped the run, the capacities
with their intervals, what saturated just above each, the USL fitted to
every overloaded step with the ratio it implies, and how the steps were
kept quiet. ``measures.decide`` turns it into the verdict: PASS when the
interval lies wholly at or above the bar, FAIL wholly below, INCONCLUSIVE
across it. It is INCONCLUSIVE regardless where the budgets were not
enforced (the configurations then measured the machine), a capacity is
missing (every step of it passed, or failed), or most failing steps just
above a capacity were set outside the system under test (the load
generator fell behind, or the machine's cores ran out with no budgeted
service saturated).
"""

from __future__ import annotations

import math

from matchlab.experiment import scaling
from matchlab.experiment.capacity_design import SPREAD
from matchlab.experiment.capacity_fit import (
    CapacityEstimate,
    estimate_capacities,
    scaling_ratio,
    steps_by_config,
    usl_from_steps,
)
from matchlab.experiment.criteria import Context
from matchlab.experiment.measures import Measurement, decide
from matchlab.experiment.record import ExperimentRecord
from matchlab.experiment.scaling import Step
from matchlab.observe.verdicts import Verdict

QUERY = "capacity steps through the gateway (client HdrHistograms per second, shards' /metrics, /proc CPU, cgroups)"
DEFAULT_LEVEL = 0.95
INSIDE_A_STEP = ("inside a step only the load generator (with its remote write) and Prometheus' own 5 s scrapes "
                 "and rule evaluations run besides the system under test, alike in every step; the harness reads "
                 "pages, /proc and cgroup counters only before and after a step")


def key(n: int) -> str:
    return f"N={n}"


def steps_of(exp: ExperimentRecord) -> list[Step]:
    return [Step.from_dict(d) for d in exp.extra.get("steps", [])]


def budgets_of(exp: ExperimentRecord) -> scaling.Budgets:
    b = exp.extra.get("budget_values", {})
    return scaling.Budgets(b.get("shard_cpu", 0.0), b.get("gateway_cpu", 0.0))


def at_the_capacity(cap: CapacityEstimate, steps: list[Step], gateway_cpu: float) -> Step | None:
    """The lowest failing step at or above the capacity: what saturated first there."""
    if cap.estimate is None:
        return None
    above = [s for s in steps if not s.passed and s.rate >= cap.estimate]
    return min(above, key=lambda s: s.rate) if above else None


def bottleneck_text(step: Step | None, gateway_cpu: float) -> str:
    if step is None:
        return "no step failed above it"
    return scaling.bottleneck(step, scaling.Budgets(step.shard_cpu, gateway_cpu))


def foreign_share(cap: CapacityEstimate, steps: list[Step]) -> tuple[str, int, int]:
    """The limit from outside most common among the failing steps within SPREAD above the capacity, how many
    steps it set and how many failed there."""
    if cap.estimate is None:
        return "", 0, 0
    near = [s for s in steps if not s.passed and cap.estimate <= s.rate <= cap.estimate * (1 + SPREAD)]
    limits = [scaling.foreign_limit(s) for s in near]
    common = max(set(limits) - {""}, key=limits.count, default="")
    return common, limits.count(common) if common else 0, len(near)


def scaling_measurement(exp: ExperimentRecord, level: float | None = None, n: int = scaling.RATIO_SHARDS[-1]) -> Measurement:
    """capacity(n) / (n x capacity(1)) from every step of ``exp``, at ``level`` (default: the stopping look's)."""
    extra = exp.extra
    level = level or extra.get("level") or DEFAULT_LEVEL
    steps = steps_of(exp)
    gateway_cpu = budgets_of(exp).gateway_cpu
    caps = estimate_capacities(steps, level)
    by_config = steps_by_config(steps)
    lines = []
    for k in sorted(caps, key=lambda c: int(c.split("=")[1]) if c.startswith("N=") else c):
        cap = caps[k]
        lines.append(f"{cap.describe()}; at the capacity: "
                     f"{bottleneck_text(at_the_capacity(cap, by_config[k], gateway_cpu), gateway_cpu)}")
    one, many = caps.get(key(1)), caps.get(key(n))
    ratio = scaling_ratio(one, many, n) if one and many else None
    usl = usl_from_steps(steps, n)
    detail = "; ".join(x for x in (
        f"budgets: {extra.get('budgets', 'none')}", f"CPUs: {extra.get('cpus', 'not stated')}",
        f"{len(steps)} steps, {extra.get('rounds', 0)} rounds ({extra.get('stopped', 'not run')})",
        " | ".join(lines), ratio.describe() if ratio else "",
        usl.describe(n) + " (explains; the capacities decide)", INSIDE_A_STEP) if x)
    estimate = ratio.estimate if ratio else None
    interval = ratio.interval if ratio else None
    undecidable = _undecidable(exp, caps, by_config, n)
    evidence = {"kind": "capacity_ratio", "capacities": {k: [c.estimate, *(c.interval or (None, None))]
                                                         for k, c in caps.items()},
                "usl": None if usl.fit is None else {"sigma": usl.fit.sigma, "kappa": usl.fit.kappa,
                                                     "lambda": usl.fit.lam, "implied_ratio": usl.fit.implied_ratio(n)}}
    return Measurement(estimate, QUERY, detail, interval=interval, level=level, evidence=evidence, undecidable=undecidable,
                       what_would_decide=_more_rounds(exp, estimate, interval))


def _undecidable(exp: ExperimentRecord, caps: dict[str, CapacityEstimate], by_config: dict[str, list[Step]],
                 n: int) -> str:
    extra = exp.extra
    if not extra.get("enforced"):
        return (f"CPU budgets were not enforced ({extra.get('not_enforced', 'unknown')}): every configuration had "
                "the whole machine, so this measured the machine, not sharding")
    for k in (key(1), key(n)):
        cap = caps.get(k)
        if cap is None or cap.estimate is None:
            return f"{k} has no capacity: {cap.describe() if cap else 'no steps'}"
        limit, count, near = foreign_share(cap, by_config[k])
        if limit and 2 * count > near:
            return (f"{limit} ran out before the system under test did in {count} of the {near} failing steps just "
                    f"above the {k} capacity, so that capacity measured {limit}, not the shards")
    return ""


def _more_rounds(exp: ExperimentRecord, estimate: float | None, interval: tuple[float, float] | None) -> str:
    """How many rounds would resolve the bar if the estimate held (a half-width shrinks as 1/sqrt(steps))."""
    rounds, bar = exp.extra.get("rounds", 0), exp.extra.get("bar", 0.9)
    if estimate is None or interval is None or not rounds:
        return ""
    gap, half = abs(estimate - bar), (interval[1] - interval[0]) / 2
    if gap <= 0 or not math.isfinite(half):
        return "the estimate sits on the bar: no number of rounds would decide it"
    need = math.ceil(rounds * (half / gap) ** 2)
    cap = exp.extra.get("cap_rounds", rounds)
    return f"about {need} rounds at this noise would, if the estimate held (this run's cap: {cap})"


def scaling_verdict(ctx: Context, exp: ExperimentRecord) -> Verdict:
    return decide(ctx.criterion("S1.scaling"), scaling_measurement(exp))
