"""Load from inside the cluster: the Indexed Job, what each pod runs, and the exact steps that run it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest

from matchlab.errors import CommandError
from matchlab.harness import options as options_module
from matchlab.k8s import kube as kube_module
from matchlab.k8s import manifests as m
from matchlab.k8s.backend import K3dBackend
from matchlab.k8s.commands import RecordingRunner
from matchlab.k8s.helm_values import PROMETHEUS_URL
from matchlab.k8s.load_job import COMPLETION_INDEX, LOADGEN_RESOURCES, ClusterLoad, load_job
from matchlab.loadgen.__main__ import build_parser, parse_stages
from matchlab.loadgen.profile import LoadProfile
from matchlab.loadgen.results import Recorder
from matchlab.loadgen.segments import recorder_to_dict, result_lines
from matchlab.stack.spec import Topology

ROOT = Path(__file__).resolve().parents[2]
PROFILE = LoadProfile.ramping(5.0, [(20.0, 1000 / 60 * 1.1), (35.0, 16.666666666666668)])
LOAD = ClusterLoad("loadgen-a2", PROFILE, workers=3, labels={"run": "r1", "experiment": "A2"})
START_AT = 1_767_225_600.0


@pytest.mark.parametrize("version", ("1.28.0", "1.33.0"))
def test_the_job_validates_against_the_kubernetes_schemas(version):
    kubernetes_validate.validate(load_job(LOAD, START_AT, run_id="run-1"), version, strict=True)
    kubernetes_validate.validate(load_job(LOAD, START_AT, registry="reg.example/team"), version, strict=True)


def test_the_job_runs_one_pod_per_worker_once_each():
    job = load_job(LOAD, START_AT)
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"], spec["backoffLimit"]) == (
        "Indexed", 3, 3, 0)  # a retried pod would send its share twice
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["image"] == "matchlab/loadgen:0.1.0" and container["imagePullPolicy"] == "Never"
    assert container["resources"] == LOADGEN_RESOURCES
    assert container["env"] == [{"name": "WORKER_INDEX", "valueFrom": {"fieldRef": {
        "fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}}]
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    assert spec["activeDeadlineSeconds"] >= PROFILE.duration_s + 30


def pod_args(load: ClusterLoad, index: int):
    """The generator's parsed command line in pod ``index``, after the kubelet expands the worker index."""
    container = load_job(load, START_AT)["spec"]["template"]["spec"]["containers"][0]
    return build_parser().parse_args([a.replace("$(WORKER_INDEX)", str(index)) for a in container["args"]])


@pytest.mark.parametrize("index", range(3))
def test_each_pod_runs_its_segment_of_the_same_schedule_against_the_cluster_services(index):
    args = pod_args(LOAD, index)
    assert LoadProfile.ramping(args.start_rate, parse_stages(args.stages)) == PROFILE  # exactly, not rounded
    assert (args.workers, args.worker_index, args.seed, args.start_at) == (3, index, 1, START_AT)
    assert args.result_lines and args.quiet and args.rate is None and args.matches_per_min is None
    assert sorted(args.label) == ["experiment=A2", "run=r1"]
    assert args.remote_write == f"{PROMETHEUS_URL}/api/v1/write"
    gateway = next(d for d in m.app_objects() if d["kind"] == "Service" and d["metadata"]["name"] == "edge-gateway")
    port = gateway["spec"]["ports"][0]["port"]
    assert args.gateway == f"http://edge-gateway.{gateway['metadata']['namespace']}.svc.cluster.local:{port}"
    direct = ClusterLoad("loadgen-a1", PROFILE, 1, shards=("a",), via_gateway=False)
    assert pod_args(direct, 0).shard == ["a=http://me-shard-a.matching-engine.svc.cluster.local:8080"]


def run_in_plan(load: ClusterLoad, answers: dict | None = None):
    backend = K3dBackend(runner=RecordingRunner(answers=answers or {}), plan=True, load_from="cluster")
    return backend, backend.run_load_in_cluster(load)


def test_plan_steps_are_exact():
    backend, _ = run_in_plan(LOAD)
    sel = "batch.kubernetes.io/job-name=loadgen-a2,batch.kubernetes.io/job-completion-index="
    assert [str(s) for s in backend.runner.steps] == [
        ("# in-cluster load loadgen-a2: Indexed Job of 3 workers, worker i sending slots i, i+3, ... of one schedule "
         "(seed 1), all starting in 30 s"),
        "kubectl delete job loadgen-a2 -n matching-engine --ignore-not-found --wait=true",
        "# server-side apply in matching-engine: Job/loadgen-a2",
        "kubectl apply --server-side --field-manager=matchlab -n matching-engine -f -",
        "kubectl get job loadgen-a2 -n matching-engine -o json",
        *(f"kubectl logs -l {sel}{i} -n matching-engine --tail=-1" for i in range(3)),
        "kubectl delete job loadgen-a2 -n matching-engine --ignore-not-found --wait=false",
    ]


def worker_part(index: int) -> dict:
    rec = Recorder()
    for n in range(10):
        rec.on_scheduled(n)
        rec.on_sent(n, 100)
        rec.on_done(n, "abc"[index], "200", 2000 + 100 * index + n)
    return recorder_to_dict(rec, 0.5)


def job_answer(condition: str) -> str:
    return json.dumps({"status": {"conditions": [{"type": condition, "status": "True"}]}})


@pytest.fixture(autouse=True)
def no_poll_wait(monkeypatch):
    monkeypatch.setattr(kube_module, "POLL_S", 0.0)


def test_a_finished_job_is_read_back_from_every_pods_log_and_merged():
    answers = {("kubectl", "get", "job"): ["{}", job_answer("Complete")]}
    for i in range(3):
        sel = f"batch.kubernetes.io/job-name=loadgen-a2,{COMPLETION_INDEX}={i}"
        answers[("kubectl", "logs", "-l", sel)] = "\n".join(["progress...", *result_lines(worker_part(i))])
    backend = K3dBackend(runner=RecordingRunner(answers=answers), plan=False, load_from="cluster")
    result = backend.run_load_in_cluster(LOAD)
    assert result.ok == result.sent == 30 and result.extra["workers"] == 3
    assert set(result.latency_by_target_ms) == {"a", "b", "c"} and result.cpu_seconds == 1.5
    assert result.target_rate == pytest.approx(PROFILE.expected_requests() / PROFILE.duration_s)


def test_a_failed_job_stops_with_the_workers_log_tails_and_is_deleted():
    answers = {("kubectl", "get", "job"): job_answer("Failed"), ("kubectl", "logs"): "loadgen: started 3.2 s late"}
    runner = RecordingRunner(answers=answers)
    backend = K3dBackend(runner=runner, plan=False, load_from="cluster")
    with pytest.raises(CommandError, match=r"job/loadgen-a2 failed:\n--- worker 0:\nloadgen: started 3.2 s late"):
        backend.run_load_in_cluster(LOAD)
    assert runner.commands()[-1][:3] == ("kubectl", "delete", "job")


def test_host_load_builds_no_load_image_and_cluster_load_does(tmp_path):
    host = K3dBackend(plan=True)
    host.start(Topology.MULTI, tmp_path / "h" / "multi")
    assert not any("loadgen" in str(s) for s in host.runner.steps)
    cluster = K3dBackend(plan=True, load_from="cluster")
    cluster.start(Topology.MULTI, tmp_path / "c" / "multi")
    steps = [str(s) for s in cluster.runner.steps]
    assert any("build images" in s and "matchlab/loadgen:0.1.0-" in s for s in steps)
    assert any(s.startswith("k3d image import") and "matchlab/loadgen:0.1.0" in s for s in steps)
    assert cluster.default_load_workers() == 3  # one per agent node


class _Declared:
    """Records what ``pytest_addoption`` declares, so the fake config has every option's real default."""

    def __init__(self) -> None:
        self.defaults: dict[str, object] = {}

    def getgroup(self, *_args) -> _Declared:
        return self

    def addoption(self, name: str, *_names, **kw) -> None:
        self.defaults[name] = kw.get("default", False if kw.get("action") == "store_true" else None)


class FakeConfig:
    """What pytest_configure reads: the parsed options, with the defaults pytest_addoption declares."""

    def __init__(self, **given) -> None:
        declared = _Declared()
        options_module.pytest_addoption(declared)
        self.options = {**declared.defaults, "--profile": "quick", **given}
        self.stash = {}

    def getoption(self, name: str):
        return self.options[name]


@pytest.mark.parametrize("options, message", [
    ({"--load-from": "cluster"}, "--load-from cluster applies to the Kubernetes backends"),
    ({"--backend": "k3d", "--load-workers": 2}, "on a Kubernetes backend goes with --load-from cluster"),
    ({"--backend": "k3d", "--load-from": "cluster", "--load-workers": 0}, "--load-workers N (N >= 1)"),
])
def test_load_options_are_checked_before_anything_runs(options, message):
    from matchlab.harness.options import pytest_configure

    with pytest.raises(pytest.UsageError, match=re.escape(message)):
        pytest_configure(FakeConfig(**options))
    pytest_configure(FakeConfig(**{"--backend": "k3d", "--load-from": "cluster", "--load-workers": 2, "--plan": True}))
    pytest_configure(FakeConfig(**{"--backend": "k3d", "--load-from": "cluster"}))  # a real run drives its phases


def test_plan_shows_the_in_cluster_load_steps():
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "experiments/test_smoke.py",
                           "--backend", "k3d", "--plan", "--load-from", "cluster", "--load-workers", "2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "in-cluster load loadgen-example: Indexed Job of 2 workers" in out
    assert "batch.kubernetes.io/job-completion-index=1 -n matching-engine --tail=-1" in out
    assert "job-completion-index=2" not in out
