"""The in-cluster load pods rebuild the very orders the host would have sent for a phase.

The Jobs the load driver generates for an experiment's phase are run here for real: each pod's exact
command line, with the cluster Service URL pointed at a recording HTTP target on 127.0.0.1, as
separate processes. Together they must send the same orders (symbols, sides, types, prices,
quantities) as the host's own request source for that phase, each once.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass

import pytest

from matchlab.experiment.profiles import PROFILES
from matchlab.experiment.runner import ExperimentRunner, Route
from matchlab.k8s.backend import K3dBackend
from matchlab.k8s.commands import RecordingRunner
from matchlab.k8s.load_driver import ClusterLoadDriver
from matchlab.k8s.load_job import load_job, service_url
from matchlab.loadgen.driver import PhaseLoad
from matchlab.loadgen.flow import hot_symbol_mix
from matchlab.loadgen.profile import LoadProfile
from matchlab.loadgen.targets import interleave
from matchlab.loadgen.workers import run_worker_processes
from matchlab.stack.spec import Endpoints
from tests.integration.recording_target import content, recording_target_fixture  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration

WORKERS, DURATION_S = 2, 2.0
START_LEAD_S = 4.0  # interpreter start-up of the worker processes on a busy 2-core machine


@dataclass
class FakeStack:
    """What the experiment runner reads of a stack: its backend and its endpoints."""

    backend: object
    endpoints: Endpoints


def pod_argv(job: dict, index: int, target: str) -> list[str]:
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    at = args.index("--remote-write")
    args = args[:at] + args[at + 2:]  # no Prometheus here
    return [a.replace("$(WORKER_INDEX)", str(index)).replace(service_url("edge-gateway"), target) for a in args]


def test_the_pods_together_send_the_orders_of_the_host_s_flows(recording_target):
    endpoints = Endpoints(shards={s: "http://127.0.0.1:1" for s in "abc"}, shard_metrics={}, gateway="http://127.0.0.1:1",
                          gateway_metrics=None, prometheus="http://127.0.0.1:1", broker="127.0.0.1:1")
    backend = K3dBackend(runner=RecordingRunner(), plan=True, load_from="cluster", load_workers=WORKERS)
    stack = FakeStack(backend, endpoints)
    gateway_abc = Route(("a", "b", "c"), via_gateway=True)
    hot = hot_symbol_mix("TEST-ASSET-A")
    # A hot-symbol flow mixed with a stationary one (as B4 and the probe phases mix them); a second runner
    # draws the same flows (the same seeds) as host copies to compare with.
    host_runner, runner = (ExperimentRunner(stack, PROFILES["quick"], "r") for _ in range(2))
    host = [host_runner.source(gateway_abc, "hot", mix=hot), host_runner.source(gateway_abc, "plain")]
    mixed = interleave([(30.0, runner.source(gateway_abc, "hot", mix=hot)), (10.0, runner.source(gateway_abc, "plain"))])
    start_at = time.time() + START_LEAD_S
    driver: ClusterLoadDriver = runner.load_driver
    loads = driver.cluster_loads(PhaseLoad("B4", "B4", LoadProfile.constant(40.0, DURATION_S), mixed, start_at))
    argvs = [pod_argv(load_job(load, start_at), i, recording_target.url) for load in loads for i in range(WORKERS)]
    parts = run_worker_processes(argvs, START_LEAD_S + DURATION_S + 30)

    expected = Counter()
    for load, source in zip(loads, host, strict=True):
        slots = len(list(load.profile.send_offsets()))
        expected.update(content(json.loads(source().body)) for _ in range(slots))
    sent = Counter(content(order) for order in recording_target.bodies)
    assert sum(p["ok"] for p in parts) == len(recording_target.bodies) == sum(expected.values()) == 80
    assert sent == expected
    assert len({o["orderId"] for o in recording_target.bodies}) == 80  # each order once, ids unique
