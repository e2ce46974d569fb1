"""The experiments as data: the table of docs/internals/design.md §5, and each criterion paired with its measure.

An ``Experiment`` says what it is for (its ASR), where it runs (topology),
what books it starts from (``Seed``), what it depends on, and its design:
``Phases`` (load phases at target match rates, A1-A3, B1-B4), a
``Comparison`` (interleaved arms, A4 and B5 and their calibrations) or a
``Search`` (the capacity searches). ``Suite`` runs any of them (one
executor). ``MEASURES`` pairs every registry criterion with the measure that
returns its ``Measurement``; ``measures.decide`` judges them all alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from matchlab.experiment import criteria, searches
from matchlab.experiment import registry as reg
from matchlab.experiment.comparisons import BROKER_OUTAGE, INJECTED_DELAY, LOAD_ON, SHAM, Comparison
from matchlab.experiment.measures import Measurement
from matchlab.experiment.record import ExperimentRecord
from matchlab.experiment.runner import Route
from matchlab.experiment.scaling_measure import scaling_measurement
from matchlab.loadgen.flow import STATIONARY, OrderMix, hot_symbol_mix
from matchlab.observe.verdicts import Verdict
from matchlab.stack.spec import Topology

if TYPE_CHECKING:
    from matchlab.experiment.suite import Suite

SEED = (500, 50)  # resting orders / levels per symbol
SHARD_A = Route(("a",), via_gateway=False)
GATEWAY_A = Route(("a",), via_gateway=True)
GATEWAY_ABC = Route(("a", "b", "c"), via_gateway=True)
ABC = ("a", "b", "c")
# B2 offers the bar plus this many standard deviations of its own 30 s windows' spread (the replica's forecast).
B2_MARGIN_SIGMAS = 3.0


@dataclass(frozen=True)
class Seed:
    """The books an experiment starts from: emptied, then seeded per symbol (a shard may have its own)."""

    shards: tuple[str, ...]
    per_symbol: tuple[int, int] = SEED
    overrides: tuple[tuple[str, tuple[int, int]], ...] = ()


@dataclass(frozen=True)
class MatchPhase:
    """A load phase at a target match rate (orders/s from the run's measured fills per order)."""

    name: str
    route: Route
    matches_per_min: float
    duration: str  # the profile's field giving its length
    steer_for: str | None = None  # the profile's field: steered warm-up, then open loop at the rate fixed then
    margin_sigmas: float | None = None  # open loop from the start at the rate whose windows make the target plus
    # this many standard deviations of their spread, as a replica of the seeded books forecasts (B2)
    mix: OrderMix = STATIONARY
    reseed: tuple[int, int] | None = None  # empty the books and seed them so before this phase (A3's depths)


@dataclass(frozen=True)
class RampPhase:
    """Ramping match rates: ``stages`` are (index into the profile's ``durations`` tuple, matches/min reached)."""

    name: str
    route: Route
    start_matches_per_min: float
    durations: str
    stages: tuple[tuple[int, float], ...]


@dataclass(frozen=True)
class Phases:
    phases: tuple[MatchPhase | RampPhase, ...]
    calibrate_on: Route | None = None  # measure fills per order on this route first (A1, B1)
    recalibrate: bool = False  # then take the first phase's own fills per order (a longer, better measurement)


@dataclass(frozen=True)
class Search:
    run: Callable[[Suite], ExperimentRecord]


@dataclass(frozen=True)
class Experiment:
    id: str
    title: str
    asr: str
    topology: Topology
    design: Phases | Comparison | Search
    seed: Seed | None = None
    needs: tuple[str, ...] = ()


def _depth_phase(count: int, levels: int) -> MatchPhase:
    return MatchPhase(reg.depth_name(count, levels), SHARD_A, 1000, "a3_s", reseed=(count, levels))


A4 = Comparison("a", SHARD_A, 1000, BROKER_OUTAGE, "a4_cycles", "A4.decoupling", ("base", "outage"))
B5 = Comparison("a", GATEWAY_A, 1000, LOAD_ON, "b5_cycles", "B5.isolation", ("b-idle", "b-loaded"),
                load_on=Route(("b",), via_gateway=True), load_matches_per_min=3000)
SINGLE, MULTI = Topology.SINGLE, Topology.MULTI
_EXPERIMENTS = (
    Experiment("A1", "Warm-up, 500 matches/min", reg.ASR1, SINGLE,
               Phases((MatchPhase("A1", SHARD_A, 500, "a1_s"),), calibrate_on=SHARD_A, recalibrate=True),
               Seed(("a",))),
    Experiment("A2", "Normal load, 1,000 matches/min (primary ASR 1)", reg.ASR1, SINGLE,
               Phases((MatchPhase("A2", SHARD_A, 1000, "a2_s"),)), Seed(("a",)), ("A1",)),
    Experiment("A3", "Depth variation, 1,000 matches/min, each from an empty book", reg.ASR1, SINGLE,
               Phases(tuple(_depth_phase(n, lv) for n, lv in reg.A3_DEPTHS)), None, ("A1",)),
    Experiment("A4", "Broker outage during 1,000 matches/min (+ probe traffic), in cycles", reg.ASR1, SINGLE, A4,
               Seed(("a",)), ("A1",)),
    Experiment("B1", "Baseline: shard a only, 1,000 matches/min", reg.ASR2, MULTI,
               Phases((MatchPhase("B1", GATEWAY_A, 1000, "b1_s"),), calibrate_on=GATEWAY_ABC, recalibrate=True),
               Seed(ABC)),
    Experiment("B2", "Peak sustained over 12 symbols, the bar plus its windows' spread (primary ASR 2)", reg.ASR2,
               MULTI, Phases((MatchPhase("B2", GATEWAY_ABC, reg.ASR2_BAR, "b2_s", steer_for="b2_warmup_s",
                                         margin_sigmas=B2_MARGIN_SIGMAS),)), Seed(ABC), ("B1",)),
    Experiment("B3", "Ramp 1,000 -> 2,500 -> 5,000 matches/min, then hold 5,000", reg.ASR2, MULTI,
               Phases((RampPhase("ramp", GATEWAY_ABC, 1000, "b3_stages_s", ((0, 1000), (1, 2500), (2, 5000))),
                       MatchPhase("hold", GATEWAY_ABC, 5000, "b3_hold_s", steer_for="b3_hold_warmup_s"))),
               Seed(ABC), ("B1", "B2")),
    Experiment("B4", "Hot symbol: 80 % of 5,000 matches/min to TEST-ASSET-A", reg.ASR2, MULTI,
               Phases((MatchPhase("B4", GATEWAY_ABC, 5000, "b4_s", mix=hot_symbol_mix("TEST-ASSET-A")),)),
               Seed(ABC, overrides=(("a", (2000, 100)),)), ("B1",)),
    Experiment("B5", "Shard isolation: shard a at 1,000/min (+ probe), shard b idle or at 3,000/min, in cycles",
               reg.ASR2, MULTI, B5, Seed(ABC), ("B1",)),
    Experiment("S1", "Scaling from capacity: knees of 1 to K shards behind the gateway", reg.ASR2, Topology.SCALING,
               Search(searches.run_s1)),
    Experiment("C1", "Capacity search, shard a direct", "headroom", SINGLE, Search(searches.run_c1)),
    Experiment("C2", "Capacity search, gateway", "headroom", MULTI, Search(searches.run_c2)),
    Experiment("C3", "What a shard's CPU buys: shard a at three CPU budgets", "headroom", SINGLE,
               Search(searches.run_c3)),
    Experiment("C4", "Scaling from capacity with a throttled gateway", "headroom", MULTI, Search(searches.run_c4)),
    Experiment("C5", "Sizing check: ASR 2's rate at the smallest CPU per shard the models give", "headroom",
               Topology.SCALING, Search(searches.run_c5), needs=("C3", "S1")),
    # Calibration (docs/internals/design.md §6, "Calibrated"): the comparisons where the truth is known.
    Experiment("A4-sham", "A4's cycles with nothing paused", reg.CALIBRATION, SINGLE,
               replace(A4, treatment=SHAM, criterion="A4-sham.decoupling", names=("base", "sham")), Seed(("a",)),
               ("A1",)),
    Experiment("A4-power", "A4's cycles with a match delay injected in the outage arms", reg.CALIBRATION, SINGLE,
               replace(A4, treatment=INJECTED_DELAY, criterion="A4-power.decoupling", names=("base", "delayed")),
               Seed(("a",)), ("A1",)),
    Experiment("B5-sham", "B5's cycles with shard b 'loaded' at zero", reg.CALIBRATION, MULTI,
               replace(B5, criterion="B5-sham.isolation", names=("b-idle", "b-sham"), load_matches_per_min=0),
               Seed(ABC), ("B1",)),
)
EXPERIMENTS: dict[str, Experiment] = {e.id: e for e in _EXPERIMENTS}

# -- each criterion's measure --------------------------------------------------------------------------------------

Measure = Callable[["Suite", ExperimentRecord], Measurement | Verdict]


def _window(s: Suite, e: ExperimentRecord, phase: int = 0) -> tuple[float, float]:
    return criteria.measured_window(e.phases[phase], s.profile)


def _open_loop(s: Suite, e: ExperimentRecord) -> tuple[float, float]:
    """B2's judged window: from the end of its warm-up to the scrape after its load stopped."""
    return criteria.measured_window(e.phases[0], s.profile)


MEASURES: dict[str, Measure] = {
    "A2.p99": lambda s, e: criteria.phase_p99(s.ctx(e), e, "a", excluded_note=True),
    "A2.p99_secondary": lambda s, e: criteria.phase_p99(s.ctx(e), e, "a", excluded_note=True),
    "A2.error_rate": lambda s, e: criteria.error_rate(s.ctx(e), e, ("a",), via_gateway=False),
    "A2.queue": lambda s, e: criteria.queue(s.ctx(e), ("a",), *_window(s, e)),
    "A2.depth": lambda s, e: criteria.depth(s.ctx(e), ("a",), _window(s, e)[0], e.phases[0].end),
    "A4.decoupling": lambda s, e: criteria.rise(s.ctx(e), "A4.decoupling", e, s.profile.a4_cycles),
    "A4.events_lost": lambda s, e: criteria.events_lost(lambda: s.reconcile_events(e)),
    "A4.outage_orders": lambda s, e: criteria.outage_orders(s.ctx(e), e),
    "B2.sustained": lambda s, e: criteria.sustained_rate(s.ctx(e), e),
    "B2.replica": lambda s, e: criteria.replica_agreement(s.ctx(e), e, s.replica_fills(e)),
    "B2.events_agree": lambda s, e: criteria.events_agree(s.ctx(e), e, s.count_events),
    "B2.error_rate": lambda s, e: criteria.error_rate(s.ctx(e), e, ABC, via_gateway=True),
    "B2.queue": lambda s, e: criteria.queue(s.ctx(e), ABC, *_open_loop(s, e)),
    "B2.depth": lambda s, e: criteria.depth(s.ctx(e), ABC, _open_loop(s, e)[0], e.phases[0].end),
    "B3.hold": lambda s, e: criteria.hold_rate(s.ctx(e), e),
    "B4.p99_hot": lambda s, e: criteria.phase_p99(s.ctx(e), e, "a"),
    "B4.hot_share": lambda s, e: criteria.hot_share(s.ctx(e), e),
    "B5.isolation": lambda s, e: criteria.rise(s.ctx(e), "B5.isolation", e, s.profile.b5_cycles),
    "B5.b_load": lambda s, e: criteria.b_load(s.ctx(e), e),
    "B5.b_errors": lambda s, e: criteria.b_errors(s.ctx(e), e),
    "S1.scaling": lambda s, e: scaling_measurement(e),
    "A4-sham.decoupling": lambda s, e: criteria.rise(s.ctx(e), "A4-sham.decoupling", e, s.profile.a4_cycles),
    "A4-power.decoupling": lambda s, e: criteria.rise(s.ctx(e), "A4-power.decoupling", e, s.profile.a4_cycles),
    "B5-sham.isolation": lambda s, e: criteria.rise(s.ctx(e), "B5-sham.isolation", e, s.profile.b5_cycles),
}
for _name in (reg.depth_name(n, lv) for n, lv in reg.A3_DEPTHS):
    MEASURES[f"A3.p99.{_name}"] = lambda s, e, name=_name: criteria.phase_p99(s.ctx(e), e, "a", name)
for _shard in ABC:
    MEASURES[f"B2.p99.{_shard}"] = lambda s, e, sh=_shard: criteria.p99(
        s.ctx(e), sh, *_open_loop(s, e), criteria.client_p99_note(e.phases[0]))
    MEASURES[f"B3.memory.{_shard}"] = lambda s, e, sh=_shard: criteria.memory_growth(
        s.ctx(e), sh, s.experiment("B2").start, e.end, reg.MAX_MEMORY_GROWTH)
