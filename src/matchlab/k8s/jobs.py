"""In-cluster load (``--load-from cluster``): per load phase, Indexed Jobs of load-generator pods, one per
order flow (``load_job``), all started at one time, read back from their logs and merged
(``matchlab.k8s.load_driver`` turns the experiments' phases into these). Every Job is deleted afterwards."""

from __future__ import annotations

import json
import time

from matchlab.errors import CommandError
from matchlab.k8s import kube as kube_module
from matchlab.k8s import manifests as m
from matchlab.k8s.kube import Kube
from matchlab.k8s.load_job import COMPLETION_INDEX, START_LEAD_S, ClusterLoad, load_job
from matchlab.loadgen.results import LoadResult
from matchlab.loadgen.segments import merged_result, read_result_lines
from matchlab.waiting import wait_until

WORKER_LOG_TAIL_LINES = 15


class ClusterJobs:
    def __init__(self, kube: Kube, registry: str = "", run_id: str = "", image: str | None = None,
                 plan: bool = False) -> None:
        self.kube, self.registry, self.run_id, self.image, self.plan = kube, registry, run_id, image, plan

    def schedulable_nodes(self) -> int:
        """Nodes that take ordinary pods (at least one)."""
        out = self.kube.kubectl("get", "nodes", "-o", "json")
        nodes = json.loads(out)["items"] if out.strip() else []
        return max(1, sum(1 for n in nodes if not n["spec"].get("unschedulable") and not any(
            t.get("effect") == "NoSchedule" for t in n["spec"].get("taints", []))))

    def state(self, name: str) -> str:
        """"Complete", "Failed" or "" (still running) for a Job."""
        out = self.kube.kubectl("get", "job", name, "-n", m.APP_NAMESPACE, "-o", "json")
        if not out.strip():
            return "Complete"  # a recorded plan: nothing runs
        conditions = json.loads(out).get("status", {}).get("conditions", [])
        return next((c["type"] for c in conditions if c["type"] in ("Complete", "Failed") and c["status"] == "True"), "")

    def run_one(self, load: ClusterLoad, start_at: float | None = None) -> LoadResult:
        """Run one load phase as an Indexed Job, collect every worker's measurements and merge them."""
        return merged_result(self.run([load], start_at), load.profile)

    def run(self, loads: list[ClusterLoad], start_at: float | None = None) -> list[dict]:
        """Run Indexed Jobs side by side from one start time; every worker's measurements, Job after Job.

        Several Jobs serve a phase that mixes flows (e.g. the ASR's flow plus probe traffic), each at its
        share of the rate. Every Job is deleted afterwards, whatever happened.
        """
        ns = m.APP_NAMESPACE
        start_at = time.time() + START_LEAD_S if start_at is None else start_at
        try:
            for load in loads:
                self.kube.runner.note(
                    f"in-cluster load {load.name}: Indexed Job of {load.workers} workers, worker i sending slots "
                    f"i, i+{load.workers}, ... of one schedule (seed {load.seed}), all starting in "
                    f"{max(0.0, start_at - time.time()):.0f} s")
                self.kube.kubectl("delete", "job", load.name, "-n", ns, "--ignore-not-found", "--wait=true")
                self.kube.apply([load_job(load, start_at, self.registry, self.run_id, self.image)], ns)
            return [part for load in loads for part in self._collect(load)]
        finally:
            for load in loads:
                self.kube.kubectl("delete", "job", load.name, "-n", ns, "--ignore-not-found", "--wait=false",
                                  check=False)

    def _collect(self, load: ClusterLoad) -> list[dict]:
        """Wait for the Job; each worker's measurements from its log (a failed Job: its workers' log tails)."""
        state = wait_until(lambda: self.state(load.name), load.timeout_s, f"job/{load.name} to finish",
                           interval=kube_module.POLL_S)
        parts, logs = [], []
        for index in range(load.workers):
            log_text = self.kube.kubectl("logs", "-l", f"batch.kubernetes.io/job-name={load.name},"
                                         f"{COMPLETION_INDEX}={index}", "-n", m.APP_NAMESPACE, "--tail=-1",
                                         check=state != "Failed")
            logs.append(log_text)
            if state != "Failed" and not self.plan:
                parts.append(read_result_lines(log_text, f"worker {index} of job/{load.name}"))
        if state == "Failed":
            tails = "\n".join(f"--- worker {i}:\n" + "\n".join(t.splitlines()[-WORKER_LOG_TAIL_LINES:])
                              for i, t in enumerate(logs))
            raise CommandError(f"in-cluster load job/{load.name} failed:\n{tails}")
        return parts
