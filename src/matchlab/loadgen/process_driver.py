"""The experiments' load phases as N load-generator processes on this machine (``--load-workers N``, local backend).

The local counterpart of the in-cluster Indexed Jobs (``matchlab.k8s.load_driver``), with the same
pieces: each flow of a phase at its share of the rate (``flow_loads``), split into N disjoint segments
of one schedule with the same seed (``worker_args``, ``matchlab.loadgen.segments``), every worker
starting at the phase's ``start_at``, each remote-writing its client metrics with a ``worker`` label
and handing its HdrHistograms back as result lines, merged into the one ``LoadResult`` a single
process recording every request would give. The workers reach the stack by the endpoints the host's
own runner uses; they are started and stopped by PID (``run_worker_processes``) and recorded in the
stack's PID file while they run, so a later run reaps what a hard kill of pytest left.

Like the pods, the processes are out of the host's reach while they run, so a phase's rate is fixed
when it starts (``steers_live = False``): the experiments run a match-rate phase at its calibrated
order rate and say so in the record's notes.
"""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from matchlab.errors import ConfigError, ProcessError
from matchlab.loadgen.driver import PhaseLoad, flow_loads
from matchlab.loadgen.results import LoadResult
from matchlab.loadgen.runner import DEFAULT_MAX_IN_FLIGHT
from matchlab.loadgen.segments import merged_result
from matchlab.loadgen.workers import COMPLETION_GRACE_S, run_worker_processes, start_lead_s, worker_args

if TYPE_CHECKING:
    from matchlab.stack.pidfile import PidRegistry

# The experiments mix at most two flows in a phase (an ASR's flow plus probe traffic): the start lead
# covers that many sets of workers starting at once.
FLOWS_PER_PHASE = 2


class ProcessLoadDriver:
    name = "processes"
    steers_live = False

    def __init__(self, workers: int, on_start: Callable[[list[subprocess.Popen]], None] | None = None,
                 on_stop: Callable[[list[subprocess.Popen]], None] | None = None) -> None:
        if workers < 2:
            raise ConfigError(f"load from processes needs at least two workers (one runs in this process), got {workers}")
        self.workers = workers
        self.on_start, self.on_stop = on_start, on_stop  # the backend's PID record

    def schedule_start(self) -> float:
        return time.time() + start_lead_s(self.workers * FLOWS_PER_PHASE)

    def worker_argvs(self, phase: PhaseLoad) -> tuple[list[list[str]], list[str]]:
        """Every worker's command line for the phase, and a name for each that errors can give."""
        if phase.endpoints is None:
            raise ConfigError(f"{phase.experiment}/{phase.phase}: load from processes needs the stack's endpoints")
        ep = phase.endpoints
        per_worker = ["--max-in-flight", str(math.ceil(DEFAULT_MAX_IN_FLIGHT / self.workers))]
        argvs, names = [], []
        for part in flow_loads(phase, "processes"):
            route = part.flow.route_args(ep.gateway, ep.shards)
            mix, hot_symbol = part.flow.mix_args()
            extra = [*per_worker, *(["--hot-symbol", hot_symbol] if hot_symbol else [])]
            for i in range(self.workers):
                argvs.append(worker_args(route, part.profile, self.workers, str(i), phase.start_at,
                                         seed=part.flow.seed, mix=mix, remote_write=ep.remote_write,
                                         labels=part.labels, extra=extra))
                names.append(f"worker {i} of {self.workers} for {phase.experiment}/{phase.phase} "
                             f"(flow {part.number}, seed {part.flow.seed})")
        return argvs, names

    def run(self, phase: PhaseLoad) -> LoadResult:
        argvs, names = self.worker_argvs(phase)
        timeout = max(0.0, phase.start_at - time.time()) + phase.profile.duration_s + COMPLETION_GRACE_S
        started: list[subprocess.Popen] = []

        def record(procs: list[subprocess.Popen]) -> None:
            started.extend(procs)
            if self.on_start:
                self.on_start(procs)

        try:
            parts = run_worker_processes(argvs, timeout, names, on_start=record)
        except subprocess.TimeoutExpired:
            raise ProcessError(f"{phase.experiment}/{phase.phase}: the load workers were still running {timeout:.0f} s "
                               f"after the phase was asked for ({phase.profile.duration_s:g} s of load); they were "
                               "stopped") from None
        finally:
            if self.on_stop and started:
                self.on_stop(started)
        result = merged_result(parts, phase.profile)
        result.extra["load_from"] = self.name
        return result


def process_driver(workers: int | None, registry: PidRegistry) -> ProcessLoadDriver | None:
    """A local stack's driver for ``--load-workers N`` (None without it), its workers kept in the stack's PID record."""
    if not workers:
        return None

    def record(procs: list[subprocess.Popen]) -> None:
        for proc in procs:
            registry.add(proc.pid, list(proc.args))

    def forget(procs: list[subprocess.Popen]) -> None:
        for proc in procs:
            registry.remove(proc.pid)

    return ProcessLoadDriver(workers, on_start=record, on_stop=forget)


def load_facts(workers: int | None) -> dict[str, str]:
    """What a run's facts (results.json, the report) say about where its load came from, with ``--load-workers``."""
    if not workers:
        return {}
    return {"load": f"{workers} load-generator processes per phase, one schedule split between them; match-rate "
                    "phases run at the calibrated order rate, not steered"}
