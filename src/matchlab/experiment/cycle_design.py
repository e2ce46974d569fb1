"""How a comparison's arms are laid out in time, per profile: whole blocks per arm and the looks' schedule.

A leaf (it imports only the look schedule), so the profiles can hold a design
without importing what runs it (``cycles``).
"""

from __future__ import annotations

from dataclasses import dataclass

from matchlab.compare.sequential import LookSchedule

# An arm starts this long after a scrape of the shard under test, and its load stops this long before the scrape
# that closes its last block: the phase's own start-up and wind-down fit in between.
GRID_OFFSET_S = 0.5
ARM_MARGIN_S = 0.4
# A block counts for an arm only if it began at least this long after the arm did (the switch settles).
GUARD_S = 2.0
# ... and only if it ended by this long after the arm's load stopped (the orders still in flight).
TAIL_S = 1.0
BROKER_OUTAGE = "broker outage"


@dataclass(frozen=True)
class CycleDesign:
    """The arms' length in whole blocks (after the guard block) and when the run looks."""

    blocks_per_arm: int
    looks: LookSchedule

    def arm_s(self, block_s: float) -> float:
        """A phase's length: its guard block and ``blocks_per_arm`` blocks, less the margins at both ends."""
        return (self.blocks_per_arm + 1) * block_s - GRID_OFFSET_S - ARM_MARGIN_S

    def describe(self, block_s: float) -> str:
        return (f"arms of {self.blocks_per_arm} blocks of {block_s:g} s after a guard block "
                f"({self.arm_s(block_s):.1f} s of load each); {self.looks.describe()}")
