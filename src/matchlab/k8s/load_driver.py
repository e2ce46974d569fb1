"""The experiments' load phases run inside the cluster (``--load-from cluster``).

Each phase becomes one Indexed Job per order flow it mixes (``load_job``), all starting at the phase's
``start_at``: N pods per Job, pod i sending slots i, i+N, ... of that flow's schedule. The workers'
HdrHistograms come back through their logs and merge into one ``LoadResult``, the one a single process
recording every request would give, so verdicts and reports read it as they read the host's.

The pods are out of the host's reach while they run, so a phase's rate is fixed when it starts
(``steers_live = False``): the experiments then run a match-rate phase at its calibrated order rate.
"""

from __future__ import annotations

import itertools
import re
import time
from typing import TYPE_CHECKING

from matchlab.k8s.load_job import START_LEAD_S, ClusterLoad
from matchlab.loadgen.driver import PhaseLoad, flow_loads
from matchlab.loadgen.results import LoadResult
from matchlab.loadgen.segments import merged_result

if TYPE_CHECKING:
    from matchlab.k8s.backend import KubernetesBackend

JOB_NAME_STEM_CHARS = 50  # a Job's name is also a label value (<= 63) on its pods, with "-<n>" after it


def job_name(experiment: str, phase: str, number: int) -> str:
    """A DNS-1123 label unique within the run: ``load-<experiment>-<phase>-<n>``."""
    stem = re.sub(r"[^a-z0-9]+", "-", f"load-{experiment}-{phase}".lower()).strip("-")[:JOB_NAME_STEM_CHARS]
    return f"{stem.rstrip('-')}-{number}"


class ClusterLoadDriver:
    name = "cluster"
    steers_live = False

    def __init__(self, backend: KubernetesBackend) -> None:
        self.backend = backend
        self._workers: int | None = None
        self._numbers = itertools.count(1)

    @property
    def workers(self) -> int:
        if self._workers is None:
            self._workers = self.backend.load_workers or self.backend.default_load_workers()
        return self._workers

    def schedule_start(self) -> float:
        """Far enough ahead for the Jobs' pods to be scheduled and their interpreters started."""
        return time.time() + START_LEAD_S

    def cluster_loads(self, phase: PhaseLoad) -> list[ClusterLoad]:
        """One Job per flow of the phase, each at its share of the phase's schedule."""
        loads = []
        for part in flow_loads(phase, "the cluster"):
            mix, hot_symbol = part.flow.mix_args()
            loads.append(ClusterLoad(
                job_name(phase.experiment, phase.phase, next(self._numbers)), part.profile, self.workers,
                shards=part.flow.shards, via_gateway=part.flow.via_gateway, seed=part.flow.seed, mix=mix,
                hot_symbol=hot_symbol, labels=part.labels))
        return loads

    def run(self, phase: PhaseLoad) -> LoadResult:
        parts = self.backend.run_load_jobs(self.cluster_loads(phase), phase.start_at)
        result = merged_result(parts, phase.profile)
        result.extra["load_from"] = self.name
        return result
