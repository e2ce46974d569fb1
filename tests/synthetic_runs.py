"""Synthetic runs written by the real record code: results.json files for comparison tests and examples.

A run here is experiment A2 (one phase, a warm-up then a measured part):
the client's latencies go through the load generator's real ``Recorder``,
and the server-side bucket vector of the measured window is built from the
same latencies and handed to the real ``latency_verdict`` through a stand-in
for Prometheus that answers its one query. ``python -m tests.synthetic_runs
DIR`` writes a same-system pair and a +2 ms pair (docs/running/comparing.md).
"""

from __future__ import annotations

import math
import random
import sys
from bisect import bisect_left
from pathlib import Path

from matchlab.buckets import MATCH_BUCKETS
from matchlab.experiment import registry
from matchlab.experiment.evidence import latency_verdict
from matchlab.experiment.profiles import PROFILES
from matchlab.experiment.record import ExperimentRecord, PhaseRecord, RunRecord, machine_facts
from matchlab.loadgen.results import Recorder
from matchlab.observe.promql import Sample
from matchlab.observe.verdicts import judge, worst_of_repetitions

START = 1_790_000_000.0
WARMUP_S = 10
MEDIAN_S, SIGMA = 0.003, 0.5  # lognormal match latency: p99 about 9.6 ms


class OneWindowProm:
    """Answers ``window_buckets``' query with a fixed bucket vector (cumulative counts per `le`)."""

    def __init__(self, latencies_s: list[float]) -> None:
        ordered = sorted(latencies_s)
        self.samples = [Sample({"le": str(b)}, float(bisect_left(ordered, b + 1e-12))) for b in MATCH_BUCKETS]
        self.samples.append(Sample({"le": "+Inf"}, float(len(ordered))))

    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        return self.samples


def synthetic_run(*, seed: int, shift_s: float = 0.0, seconds: int = 60, rate: float = 100.0,
                  complete: bool = True) -> RunRecord:
    rng = random.Random(seed)
    rec = Recorder()
    measured: list[float] = []
    for second in range(seconds):
        for _ in range(max(0, round(rng.gauss(rate, math.sqrt(rate))))):
            latency = rng.lognormvariate(math.log(MEDIAN_S), SIGMA) + shift_s
            rec.on_scheduled(second)
            rec.on_sent(second, 50)
            rec.on_done(second, "shard a", "200", round(latency * 1e6))
            if second >= WARMUP_S:
                measured.append(latency)
    load = rec.result(rate, seconds)
    phase = PhaseRecord("A2", START, START + seconds, 1000.0, rate, ["a"], load, {"measured": START + WARMUP_S})
    exp = ExperimentRecord("A2", "p99 at 1,000 matches/min", "ASR 1", "shard a direct", "synthetic", [phase])
    profile = PROFILES["quick"]
    criteria = registry.build(profile)
    record = RunRecord(backend="local", profile=profile.name, scaling_note=profile.scaling_note, facts=machine_facts())
    record.experiments["A2"] = exp
    prom = OneWindowProm(measured)
    record.add_verdicts([
        latency_verdict(prom, criteria["A2.p99"], "a", START + WARMUP_S, START + seconds),
        judge(criteria["A2.queue"], rng.uniform(0.0, 0.02), "synthetic queue fill"),
    ])
    record.facts["complete"] = "yes" if complete else "no (interrupted)"
    return record


def repeated_run(seeds: list[int], shifts_s: list[float] | None = None, **kwargs) -> RunRecord:
    """A ``--repeat len(seeds)`` run: one synthetic run per repetition, kept as ``Suite`` keeps them (the
    first experiment record carries the others; each criterion the worst repetition's verdict)."""
    shifts_s = shifts_s or [0.0] * len(seeds)
    reps = [synthetic_run(seed=seed, shift_s=shift, **kwargs) for seed, shift in zip(seeds, shifts_s)]
    record = reps[0]
    record.experiments["A2"].repetitions = [r.experiments["A2"] for r in reps[1:]]
    record.verdicts = worst_of_repetitions([r.verdicts for r in reps])
    record.facts["repeat"] = f"{len(seeds)} repetitions of each experiment"
    return record


def write_run(folder: Path, **kwargs) -> Path:
    path = folder / "results.json"
    synthetic_run(**kwargs).write_json(path)
    return path


if __name__ == "__main__":
    out = Path(sys.argv[1])
    write_run(out / "run-same-1", seed=1)
    write_run(out / "run-same-2", seed=2)
    write_run(out / "run-delay-2ms", seed=3, shift_s=0.002)
    print(f"synthetic runs written under {out}")
