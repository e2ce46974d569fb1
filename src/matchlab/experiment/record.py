"""What a run produced, as plain data: experiments, phases, verdicts, ASR outcomes.

The report and the JSON results file render a ``RunRecord``; nothing here
refers to live processes or clients.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from matchlab import __version__
from matchlab.experiment import registry
from matchlab.experiment.profiles import PROFILES
from matchlab.loadgen.results import LoadResult
from matchlab.observe.verdicts import AsrOutcome, Verdict, asr_status

if TYPE_CHECKING:
    from matchlab.experiment.cycles import CycleLog


@dataclass
class PhaseRecord:
    name: str
    start: float  # unix seconds
    end: float
    matches_per_min_target: float | None
    order_rate: float  # mean orders/s scheduled
    shards: list[str]
    load: LoadResult
    marks: dict[str, float] = field(default_factory=dict)  # named instants (unix s), e.g. where "measured" begins
    extra: dict = field(default_factory=dict)

    @property
    def load_end(self) -> float:
        """When the schedule stopped sending (``end`` is when the driver finished: the last answers came back)."""
        return self.start + self.load.duration_s

    def to_dict(self) -> dict:
        doc = asdict(self)
        doc["load"] = self.load.to_dict()
        return doc


@dataclass
class ExperimentRecord:
    id: str
    title: str
    asr: str
    route: str  # "shard a direct", "gateway"
    seed: str
    phases: list[PhaseRecord] = field(default_factory=list)
    calibration: dict | None = None
    notes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    cycles: CycleLog | None = None  # a comparison's arms, looks and why it stopped (A4, B5)
    # --repeat N: the records of repetitions 2..N (this record is repetition 1). Kept apart rather than
    # merged, so every reader of one experiment's phases reads as before, and a comparison pools them.
    repetitions: list[ExperimentRecord] = field(default_factory=list)

    @property
    def samples(self) -> list[ExperimentRecord]:
        """Every repetition's record, the first being this one."""
        return [self, *self.repetitions]

    @property
    def start(self) -> float:
        return self.phases[0].start if self.phases else 0.0

    @property
    def end(self) -> float:
        return self.phases[-1].end if self.phases else 0.0

    def phase(self, name: str) -> PhaseRecord:
        return next(p for p in self.phases if p.name == name)

    def to_dict(self) -> dict:
        doc = asdict(replace(self, repetitions=[]))
        doc["phases"] = [p.to_dict() for p in self.phases]
        del doc["repetitions"]
        if self.repetitions:  # absent from single runs: their results.json stays as it was
            doc["samples"] = len(self.samples)
            doc["repetitions"] = [r.to_dict() for r in self.repetitions]
        return doc


@dataclass
class RunRecord:
    backend: str
    profile: str
    scaling_note: str
    facts: dict[str, str] = field(default_factory=dict)
    experiments: dict[str, ExperimentRecord] = field(default_factory=dict)
    verdicts: list[Verdict] = field(default_factory=list)
    log_tails: dict[str, str] = field(default_factory=dict)

    def add_verdicts(self, verdicts: list[Verdict]) -> None:
        self.verdicts.extend(verdicts)

    def outcomes(self) -> list[AsrOutcome]:
        """The status of each ASR this run evaluated anything of, against the registry's expected criteria."""
        profile = PROFILES[self.profile]
        expected = list(registry.build(profile).values())
        return [asr_status(rule, self.verdicts, expected, profile.name) for asr, rule in registry.RULES.items()
                if any(v.criterion.asr == asr for v in self.verdicts)]

    def status_line(self, outcome: AsrOutcome) -> str:
        """"ASR 2: PASS (quick) — reason; what the full profile would add"."""
        line = f"{outcome.asr}: {outcome.label} — {outcome.reason}"
        if self.profile != "full":
            line += f" [{PROFILES[self.profile].full_adds}]"
        return line

    def to_dict(self) -> dict:
        return {
            "backend": self.backend,
            "profile": self.profile,
            "scaling": self.scaling_note,
            "facts": self.facts,
            "asr": [
                {"asr": o.asr, "status": o.label, "reason": o.reason, "line": self.status_line(o)}
                for o in self.outcomes()
            ],
            "criteria": [v.to_dict() for v in self.verdicts],
            "experiments": {k: e.to_dict() for k, e in self.experiments.items()},
        }

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1, default=str))


def git_identity(repo: Path | None = None) -> str:
    """Commit of the code that ran, and whether the tree had uncommitted changes."""
    cwd = str(repo or Path(__file__).resolve().parents[3])
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=cwd, capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True,
                               text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return f"{commit}{' (uncommitted changes)' if dirty else ''}"


def machine_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{os.cpu_count()} cores, {line.split(':', 1)[1].strip()}"
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {platform.machine()}"


def machine_facts() -> dict[str, str]:
    import aiohttp
    import confluent_kafka

    return {
        "commit": git_identity(),
        "machine": machine_model(),
        "matchlab": __version__,
        "python": platform.python_version(),
        "machine cores": str(os.cpu_count()),
        "platform": platform.platform(terse=True),
        "aiohttp": aiohttp.__version__,
        "librdkafka": confluent_kafka.libversion()[0],
    }
