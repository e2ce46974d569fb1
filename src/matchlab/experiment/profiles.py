"""Experiment durations and verdict windows per profile (docs/internals/design.md §5-§6).

``full`` is the table of docs/internals/design.md §5. ``quick`` shortens every run so both ASR
suites finish in about ten minutes here, while each window a verdict reads
still holds at least 30 s of data at the ASR rates; the verdict windows
(sustain, gap, warm-up exclusion, rate window) shrink with it, and
``scaling_note`` says how, for the report.
"""

from __future__ import annotations

from dataclasses import dataclass

from matchlab.compare.sequential import LookSchedule
from matchlab.experiment.capacity_design import CapacityDesign
from matchlab.experiment.cycle_design import CycleDesign


@dataclass(frozen=True)
class ProfileSettings:
    name: str
    # verdict windows
    warmup_exclusion_s: float  # excluded from the start of a measured run
    sustain_s: float  # ASR 2: ">= 4 consecutive minutes"
    max_gap_s: float  # ASR 2: "never below for more than 30 s"
    rate_window_s: int  # window of rate() in time series verdicts
    # run lengths
    calibration_s: float
    a1_s: float
    a2_s: float
    a3_s: float  # each depth sub-test
    a4_cycles: CycleDesign  # baseline | broker out | baseline ..., looked at on a schedule, capped
    b1_s: float
    b2_warmup_s: float  # the match-rate controller steers only here
    b2_s: float  # the open-loop measured window that follows, longer than sustain_s with margin
    b3_stages_s: tuple[float, float, float, float]  # 1,000 -> 2,500 -> 5,000 ramps, then the 5,000 hold
    b3_hold_warmup_s: float  # steered part of the hold; the rest runs open loop
    b4_s: float
    b5_cycles: CycleDesign  # shard b idle | loaded | idle ...
    capacity_step_s: float
    s1: CapacityDesign  # S1's bracket and rounds of fixed-rate steps, looked at on a schedule, capped
    budget_tests: CapacityDesign  # C3 and C4: the same, shorter
    sizing_check_s: float  # C5: one step at ASR 2's rate on the budget the sizing answer gives
    progress_every_s: float

    @property
    def b3_hold_s(self) -> float:
        """The open-loop part of B3's hold (the last stage, less its steered warm-up)."""
        return self.b3_stages_s[3] - self.b3_hold_warmup_s

    @property
    def full_adds(self) -> str:
        """What a full-profile run would add to a verdict of this one."""
        if self.name == "full":
            return ""
        return (f"{self.name} profile: {self.sustain_s:g} s sustain, not the 4-minute bar; a full run adds B2's "
                f"{FULL.b2_s:g} s open-loop window, 30 s warm-up exclusions, and A4 and B5 cycles up to "
                f"{FULL.a4_cycles.looks.cap} and {FULL.b5_cycles.looks.cap} (more blocks, finer resolving power)")

    @property
    def scaling_note(self) -> str:
        if self.name == "full":
            return "full profile: the experiments' full durations and verdict windows"
        return (
            f"{self.name} profile: runs shortened (A2 {self.a2_s:g} s instead of 300 s, B2 {self.b2_s:g} s open loop instead "
            f"of 300 s); "
            f"verdict windows scaled: sustain 240 s -> {self.sustain_s:g} s, gap 30 s -> {self.max_gap_s:g} s, "
            f"warm-up exclusion 30 s -> {self.warmup_exclusion_s:g} s, rate window {self.rate_window_s} s; "
            "every verdict window still holds >= 30 s of data"
        )


FULL = ProfileSettings(
    name="full",
    warmup_exclusion_s=30, sustain_s=240, max_gap_s=30, rate_window_s=30,
    calibration_s=20, a1_s=120, a2_s=300, a3_s=180,
    a4_cycles=CycleDesign(4, LookSchedule((6, 12, 18))),
    b1_s=180, b2_warmup_s=60, b2_s=300, b3_stages_s=(120, 120, 120, 240), b3_hold_warmup_s=30, b4_s=300,
    # B5's bar (5 %, two-sided) is half A4's: on a quiet disk 18 cycles resolved +-4.9 %, 24 would about +-4.2 %.
    b5_cycles=CycleDesign(4, LookSchedule((8, 16, 24))),
    capacity_step_s=30, s1=CapacityDesign(8, 16, 1, 4, LookSchedule((3, 4, 6))),
    budget_tests=CapacityDesign(6, 11, 1, 4, LookSchedule((1, 2))), sizing_check_s=120, progress_every_s=10,
)

QUICK = ProfileSettings(
    name="quick",
    warmup_exclusion_s=5, sustain_s=60, max_gap_s=10, rate_window_s=30,
    calibration_s=6, a1_s=15, a2_s=35, a3_s=35,
    a4_cycles=CycleDesign(3, LookSchedule((3, 5))),
    b1_s=35, b2_warmup_s=20, b2_s=100, b3_stages_s=(10, 10, 10, 35), b3_hold_warmup_s=10, b4_s=35,
    b5_cycles=CycleDesign(3, LookSchedule((3, 5))),
    capacity_step_s=12, s1=CapacityDesign(4, 6, 1, 4, LookSchedule((3, 4))),
    budget_tests=CapacityDesign(4, 6, 1, 4, LookSchedule((1, 2))), sizing_check_s=30, progress_every_s=5,
)

PROFILES = {p.name: p for p in (FULL, QUICK)}
