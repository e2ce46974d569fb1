"""Interleaved arms for a relative criterion: baseline | treated | baseline | ..., with looks and a cap.

A4 (the broker out) and B5 (shard b loaded) each compare shard a's p99
between a baseline and a treated condition. One window of each would put
anything that drifts over a minute into one arm and read it as the effect,
so the arms alternate in cycles (A-B-A: every treated arm lies between two
baselines). Each arm is its own load phase, aligned to the scrape grid of
the shard under test: it starts just after a scrape, so its blocks (one
histogram delta per scrape) are whole, and the block it starts in, which
also holds the switch between arms, is its guard and counts for nothing.

The run looks at the evidence after the cycle counts its ``LookSchedule``
declares (each look with its share of the error rate) and stops at the first
look that decides, or at the cap. It never runs longer for any other reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from matchlab.experiment.cycle_design import ARM_MARGIN_S, BROKER_OUTAGE, GRID_OFFSET_S, CycleDesign
from matchlab.experiment.record import ExperimentRecord, PhaseRecord
from matchlab.experiment.scrape_blocks import ScrapeGrid
from matchlab.loadgen.profile import LoadProfile
from matchlab.loadgen.runner import RequestSource
from matchlab.observe.verdicts import Status, Verdict


def _sleep_until(t: float) -> None:
    time.sleep(max(0.0, t - time.time()))


class Treatment(Protocol):
    """What makes a treated arm different: applied as it starts, removed as it ends."""

    name: str

    def begin(self) -> None: ...

    def end(self) -> None: ...

    def recover(self) -> str:
        """Wait until the system is back to its baseline state; a note for the record ("" when instant)."""
        ...


class NoTreatment:
    """A sham: the cycle runs, nothing changes. Its verdicts show what noise alone decides."""

    def __init__(self, name: str = "sham (nothing changed)") -> None:
        self.name = name

    def begin(self) -> None:
        pass

    def end(self) -> None:
        pass

    def recover(self) -> str:
        return ""


@dataclass
class Look:
    cycles: int
    level: float  # the look's error rate
    status: str
    estimate: float | None
    low: float | None
    high: float | None
    elapsed_s: float  # since the first arm began


@dataclass
class ArmRecord:
    phase: str
    treated: bool
    cycle: int


@dataclass
class CycleLog:
    """What a cycled experiment ran and saw: its arms, each look, and why it stopped."""

    treatment: str
    design: str
    block_s: float
    shard: str = ""  # whose p99 is compared
    arms: list[ArmRecord] = field(default_factory=list)
    looks: list[Look] = field(default_factory=list)
    stopped: str = ""
    isolation: str = ""
    recoveries: list[str] = field(default_factory=list)

    def phases(self, exp: ExperimentRecord, treated: bool) -> list[PhaseRecord]:
        names = [a.phase for a in self.arms if a.treated is treated]
        return [exp.phase(n) for n in names]

    @property
    def cycles(self) -> int:
        return sum(a.treated for a in self.arms)

    @property
    def decided_after_s(self) -> float | None:
        return self.looks[-1].elapsed_s if self.looks else None

    @classmethod
    def from_dict(cls, doc: dict) -> CycleLog:
        log = cls(**{k: v for k, v in doc.items() if k not in ("arms", "looks")})
        log.arms = [ArmRecord(**a) for a in doc.get("arms", [])]
        log.looks = [Look(**x) for x in doc.get("looks", [])]
        return log


ArmLoad = Callable[[bool], tuple[float, RequestSource]]  # treated? -> (orders/s, source)
Judge = Callable[[CycleLog, float], Verdict]  # (the arms so far, the look's error rate) -> the verdict then


def run_cycles(runner, exp: ExperimentRecord, route, *, design: CycleDesign, treatment: Treatment,
               arm_load: ArmLoad, judge: Judge, grid: Callable[[], ScrapeGrid], wait_for_scrape: Callable[[], None],
               names: tuple[str, str] = ("base", "treated"), log: CycleLog) -> CycleLog:
    """Run A-B-A cycles until a scheduled look decides or the cap is reached; ``log`` is filled as it goes.

    ``runner`` is the experiment runner (``drive`` runs one phase), ``grid`` the scrape grid of the shard
    under test (read before each arm: Prometheus keeps a target's offset, but it is cheap to be sure).
    """
    start = time.time()
    levels = dict(zip(design.looks.cycles, design.looks.levels()))
    treated_done = 0

    def arm(treated: bool, cycle: int) -> PhaseRecord:
        g = grid()
        at = g.next_after(time.time() + 0.05, GRID_OFFSET_S)
        rate, source = arm_load(treated)
        duration = design.arm_s(g.interval_s)
        name = f"{names[1] if treated else names[0]}-{cycle}"
        marks = {"measured": 0.0}
        if treated:
            # Applied after the scrape that closed the previous arm's last block, inside this arm's guard block.
            _sleep_until(at - GRID_OFFSET_S + 0.05)
            treatment.begin()
            if treatment.name == BROKER_OUTAGE:
                marks |= {"outage": 0.0, "resumed": duration}
        try:
            phase = runner.drive(exp, name, route, LoadProfile.constant(rate, duration), source, None, marks=marks,
                                 start_at=at)
        finally:
            if treated:
                # Removed once the scrape closing this arm's last block has been taken.
                _sleep_until(at + duration + ARM_MARGIN_S + 0.05)
                treatment.end()
        log.arms.append(ArmRecord(name, treated, cycle))
        return phase

    arm(False, 0)
    while True:
        arm(True, treated_done)
        treated_done += 1
        note = treatment.recover()
        if note:
            log.recoveries.append(note)
        arm(False, treated_done)
        level = levels.get(treated_done)
        if level is None:
            continue
        wait_for_scrape()
        verdict = judge(log, level)
        runner.progress(f"[{exp.id}] look after {treated_done} cycles ({level:.2%} of the error rate): "
                        f"{verdict.status.value} {verdict.observed if verdict.observed is None else f'{verdict.observed:+.1%}'}"
                        + (f" [{verdict.evidence['low']:+.1%}, {verdict.evidence['high']:+.1%}]"
                           if verdict.evidence and "low" in verdict.evidence else ""))
        rise = verdict.evidence or {}
        log.looks.append(Look(treated_done, level, verdict.status.value, verdict.observed, rise.get("low"),
                              rise.get("high"), time.time() - start))
        decided = verdict.status in (Status.PASS, Status.FAIL)
        if decided or treated_done >= design.looks.cap:
            log.stopped = (f"decided at look {len(log.looks)} of {len(design.looks.cycles)}, after {treated_done} "
                           f"cycles ({time.time() - start:.0f} s)" if decided else
                           f"cap of {design.looks.cap} cycles reached undecided ({time.time() - start:.0f} s)")
            return log
