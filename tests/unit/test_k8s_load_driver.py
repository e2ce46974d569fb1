"""The experiments' load phases driven inside the cluster: the exact kubectl steps, the Jobs, the merged result.

No cluster here: the backend issues its commands to a ``RecordingRunner`` that answers as a cluster
would (the Job complete, each pod's log carrying its measurements), and every Job applied is checked
against the Kubernetes schemas.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import kubernetes_validate
import pytest
import yaml

from matchlab.experiment.profiles import PROFILES
from matchlab.experiment.record import ExperimentRecord
from matchlab.experiment.runner import ExperimentRunner, Route
from matchlab.k8s import kube as kube_module
from matchlab.k8s.backend import K3dBackend
from matchlab.k8s.commands import RecordingRunner
from matchlab.k8s.load_driver import ClusterLoadDriver, job_name
from matchlab.k8s.load_job import COMPLETION_INDEX, START_LEAD_S
from matchlab.loadgen.__main__ import build_parser, parse_stages
from matchlab.loadgen.calibration import Calibration
from matchlab.loadgen.driver import HostLoadDriver, driver_for
from matchlab.loadgen.flow import OrderMix, hot_symbol_mix
from matchlab.loadgen.profile import LoadProfile
from matchlab.loadgen.results import Recorder
from matchlab.loadgen.run_label import run_label
from matchlab.loadgen.segments import recorder_to_dict, result_lines
from matchlab.loadgen.targets import interleave
from matchlab.stack.local import LocalBackend
from matchlab.stack.spec import Endpoints
from tests.unit.fake_backend import FakeBackend

K8S_VERSIONS = ("1.28.0", "1.33.0")
WORKERS = 2
GATEWAY_ABC = Route(("a", "b", "c"), via_gateway=True)
SHARD_A = Route(("a",), via_gateway=False)


@dataclass
class FakeStack:
    """What the experiment runner reads of a stack: its backend and its endpoints."""

    backend: object
    endpoints: Endpoints


ENDPOINTS = Endpoints(shards={s: f"http://127.0.0.1:808{i}" for i, s in enumerate("abc", 1)},
                      shard_metrics={s: f"http://127.0.0.1:919{i}/metrics" for i, s in enumerate("abc", 1)},
                      gateway="http://127.0.0.1:8080", gateway_metrics=None, prometheus="http://127.0.0.1:9",
                      broker="127.0.0.1:19092")


def worker_part(latencies_us: list[int], target: str = "a") -> dict:
    rec = Recorder()
    for i, lat in enumerate(latencies_us):
        rec.on_scheduled(i // 10)
        rec.on_sent(i // 10, 50)
        rec.on_done(i // 10, target, "200", lat)
    return recorder_to_dict(rec, 0.25)


def pod_log(part: dict) -> str:
    return "\n".join(["loadgen: waiting for the common start", *result_lines(part)])


def cluster(logs: dict[str, list[dict]]) -> tuple[K3dBackend, RecordingRunner]:
    """A k3d backend on a recorded cluster whose Jobs complete with these parts (Job name -> part per worker)."""
    answers: dict = {("kubectl", "get", "job"): '{"status": {"conditions": [{"type": "Complete", "status": "True"}]}}'}
    for name, parts in logs.items():
        for index, part in enumerate(parts):
            selector = f"batch.kubernetes.io/job-name={name},{COMPLETION_INDEX}={index}"
            answers[("kubectl", "logs", "-l", selector)] = pod_log(part)
    runner = RecordingRunner(answers=answers)
    return K3dBackend(runner=runner, plan=False, load_from="cluster", load_workers=WORKERS), runner


@pytest.fixture(autouse=True)
def no_poll_wait(monkeypatch):
    monkeypatch.setattr(kube_module, "POLL_S", 0.0)


def experiment_runner(backend) -> ExperimentRunner:
    return ExperimentRunner(FakeStack(backend, ENDPOINTS), PROFILES["quick"], "run-20261127-160000",
                            progress=lambda line: None)


def applied_jobs(runner: RecordingRunner) -> list[dict]:
    docs = [yaml.safe_load(text) for argv, text in runner.inputs if argv[1:3] == ("apply", "--server-side")]
    assert all(d["kind"] == "Job" for d in docs)
    return docs


def pod_args(job: dict, index: int):
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    return build_parser().parse_args([a.replace("$(WORKER_INDEX)", str(index)) for a in args])


def job_steps(name: str) -> list[str]:
    return [f"kubectl delete job {name} -n matching-engine --ignore-not-found --wait=true",
            "kubectl apply --server-side --field-manager=matchlab -n matching-engine -f -"]


def collect_steps(name: str) -> list[str]:
    sel = f"batch.kubernetes.io/job-name={name},{COMPLETION_INDEX}="
    return [f"kubectl get job {name} -n matching-engine -o json",
            *(f"kubectl logs -l {sel}{i} -n matching-engine --tail=-1" for i in range(WORKERS))]


def delete_step(name: str) -> str:
    return f"kubectl delete job {name} -n matching-engine --ignore-not-found --wait=false"


# -- the seam ---------------------------------------------------------------------------------------


def test_the_runner_drives_the_host_unless_the_backend_offers_a_cluster_driver(tmp_path):
    assert isinstance(driver_for(LocalBackend(tmp_path)), HostLoadDriver)
    assert isinstance(driver_for(K3dBackend(plan=True)), HostLoadDriver)  # --load-from host (the default)
    backend, _ = cluster({})
    assert isinstance(experiment_runner(backend).load_driver, ClusterLoadDriver)


# -- one phase, one flow ------------------------------------------------------------------------------


def test_a_phase_runs_as_one_indexed_job_and_its_workers_results_merge_into_one(tmp_path):
    name = "load-b2-b2-1"
    samples = {"a": [1000 + 10 * i for i in range(40)], "b": [5000 + 30 * i for i in range(25)]}
    parts = [worker_part(samples["a"], "a"), worker_part(samples["b"], "b")]  # worker 0's and worker 1's
    backend, runner = cluster({name: parts})
    r = experiment_runner(backend)
    exp = ExperimentRecord("B2", "t", "ASR 2", GATEWAY_ABC.label, "")
    profile = LoadProfile.constant(30.0, 20.0)
    before = time.time()
    phase = r.drive(exp, "B2", GATEWAY_ABC, profile, r.source(GATEWAY_ABC, "B2"), None)

    steps = [str(s) for s in runner.steps if not str(s).startswith("#")]
    assert steps == [*job_steps(name), *collect_steps(name), delete_step(name)]
    (job,) = applied_jobs(runner)
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(job, version, strict=True)
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == WORKERS
    for index in range(WORKERS):
        args = pod_args(job, index)
        assert (args.workers, args.worker_index, args.seed, args.mix) == (WORKERS, index, 1, "stationary")
        assert args.gateway == "http://edge-gateway.matching-engine.svc.cluster.local:8080" and args.shards == "a,b,c"
        assert LoadProfile.ramping(args.start_rate, parse_stages(args.stages)) == profile
        assert sorted(args.label) == sorted([f"run={run_label(r.run_id)}", "experiment=B2", "phase=B2"])
        assert args.start_at == pytest.approx(phase.start, abs=1e-3)  # the phase's record and the pods share t=0
    assert before + START_LEAD_S - 1 <= phase.start <= time.time() + START_LEAD_S

    # One result, as one process recording every request would have kept it.
    one = Recorder()
    for target, lats in samples.items():
        for lat in lats:
            one.on_done(0, target, "200", lat)
    merged = phase.load
    assert merged.ok == merged.sent == 65 and merged.extra["workers"] == WORKERS
    assert merged.cpu_seconds == pytest.approx(0.5)
    assert merged.target_rate == pytest.approx(30.0)
    expected = one.result(30.0, 20.0, 0.0)
    assert merged.latency_ms == expected.latency_ms
    assert merged.latency_by_target_ms == expected.latency_by_target_ms


def test_a_phase_straight_to_a_shard_uses_the_shard_service():
    backend, runner = cluster({"load-a1-a1-1": [worker_part([900]), worker_part([950])]})
    r = experiment_runner(backend)
    exp = ExperimentRecord("A1", "t", "ASR 1", SHARD_A.label, "")
    r.drive(exp, "A1", SHARD_A, LoadProfile.constant(10.0, 5.0), r.source(SHARD_A, "A1"), None)
    (job,) = applied_jobs(runner)
    args = pod_args(job, 1)
    assert args.gateway is None and args.shard == ["a=http://me-shard-a.matching-engine.svc.cluster.local:8080"]


# -- a phase mixing two flows (the ASR's flow plus probe traffic) ------------------------------------------


def test_a_mixed_phase_runs_one_job_per_flow_at_its_share_from_one_start():
    names = ("load-a4-a4-1", "load-a4-a4-2")
    backend, runner = cluster({names[0]: [worker_part([2000] * 5), worker_part([2100] * 5)],
                               names[1]: [worker_part([3000] * 50), worker_part([3100] * 50)]})
    r = experiment_runner(backend)
    exp = ExperimentRecord("A4", "t", "ASR 1", SHARD_A.label, "")
    source = interleave([(20.0, r.source(SHARD_A, "A4")), (200.0, r.source(SHARD_A, "A4p"))])
    phase = r.drive(exp, "A4", SHARD_A, LoadProfile.constant(220.0, 10.0), source, 1000)

    steps = [str(s) for s in runner.steps if not str(s).startswith("#")]
    assert steps == [*job_steps(names[0]), *job_steps(names[1]), *collect_steps(names[0]), *collect_steps(names[1]),
                     delete_step(names[0]), delete_step(names[1])]
    asr, probe = applied_jobs(runner)
    for job in (asr, probe):
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(job, version, strict=True)
    a, p = pod_args(asr, 0), pod_args(probe, 0)
    assert (a.seed, p.seed) == (1, 2)  # each flow as the host would have drawn it
    assert LoadProfile.ramping(a.start_rate, parse_stages(a.stages)) == LoadProfile.constant(20.0, 10.0)
    assert LoadProfile.ramping(p.start_rate, parse_stages(p.stages)) == LoadProfile.constant(200.0, 10.0)
    assert a.start_at == p.start_at
    assert phase.load.ok == 110 and phase.load.extra["workers"] == 2 * WORKERS
    assert phase.load.target_rate == pytest.approx(220.0)


# -- match-rate phases: fixed at the calibrated rate ---------------------------------------------------


def test_a_match_rate_phase_runs_at_the_calibrated_order_rate_without_steering():
    backend, runner = cluster({"load-b2-b2-1": [worker_part([1000]), worker_part([1000])]})
    r = experiment_runner(backend)
    r.calibration = Calibration(40.0, 400, 200.0, 0.5)  # 1,000 matches/min -> 33.3 orders/s
    exp = ExperimentRecord("B2", "t", "ASR 2", GATEWAY_ABC.label, "")
    phase = r.drive_matches(exp, "B2", GATEWAY_ABC, 1000, 60.0, r.source(GATEWAY_ABC, "B2"), steer_for_s=20.0)
    (job,) = applied_jobs(runner)
    args = pod_args(job, 0)
    assert LoadProfile.ramping(args.start_rate, parse_stages(args.stages)) == LoadProfile.constant(1000 / 60 / 0.5, 60.0)
    assert phase.marks["measured"] == pytest.approx(phase.start + 20.0)
    assert phase.extra["fixed_order_rate"] == pytest.approx(1000 / 60 / 0.5)
    assert exp.extra["rate_control"]["B2"] == [] and "not steered" in exp.notes[-1]


def test_the_hot_symbol_mix_reaches_the_pods():
    backend, runner = cluster({"load-b4-b4-1": [worker_part([1000]), worker_part([1000])]})
    r = experiment_runner(backend)
    exp = ExperimentRecord("B4", "t", "ASR 2", GATEWAY_ABC.label, "")
    source = r.source(GATEWAY_ABC, "B4", mix=hot_symbol_mix("TEST-ASSET-A"))
    r.drive(exp, "B4", GATEWAY_ABC, LoadProfile.constant(10.0, 5.0), source, None)
    args = pod_args(applied_jobs(runner)[0], 0)
    assert (args.mix, args.hot_symbol) == ("hot", "TEST-ASSET-A")


# -- what cannot run in the cluster says so ----------------------------------------------------------------


def test_a_source_without_a_flow_description_or_an_unexpressible_mix_is_refused_before_any_job():
    backend, runner = cluster({})
    r = experiment_runner(backend)
    exp = ExperimentRecord("X", "t", "", "", "")
    subset = r.source(GATEWAY_ABC, "X", symbols=["TEST-ASSET-A"])
    with pytest.raises(ValueError, match="no flow description"):
        r.drive(exp, "X", GATEWAY_ABC, LoadProfile.constant(10.0, 5.0), subset, None)
    odd = r.source(GATEWAY_ABC, "Y", mix=OrderMix(aggressive_ratio=0.3))
    with pytest.raises(ValueError, match="no way to express the order mix"):
        r.drive(exp, "Y", GATEWAY_ABC, LoadProfile.constant(10.0, 5.0), odd, None)
    assert not any(c[:3] == ("kubectl", "apply", "--server-side") for c in runner.commands())


@pytest.mark.parametrize("experiment, phase", [("A3", "A3-500@50"), ("S1", "N3@1200"), ("C1", "100/s"),
                                               ("B5", "b-loaded"), ("X" * 40, "Y" * 40)])
def test_job_names_are_dns_labels(experiment, phase):
    name = job_name(experiment, phase, 12)
    assert len(name) <= 63 and name.endswith("-12")
    assert all(c.isalnum() and c.islower() or c.isdigit() or c == "-" for c in name) and name[0].isalpha()


def test_timed_events_count_from_the_schedule_start_not_from_the_request(monkeypatch):
    """A4's broker outage at t=x must hit the pods' schedule at x, though the Job starts after a lead."""
    lead = 0.4
    monkeypatch.setattr(ClusterLoadDriver, "schedule_start", lambda self: time.time() + lead)
    monkeypatch.setattr(kube_module, "POLL_S", 0.05)
    backend, runner = cluster({"load-a4-a4-1": [worker_part([1000]), worker_part([1000])]})
    running, done = "{}", '{"status": {"conditions": [{"type": "Complete", "status": "True"}]}}'
    runner.answers[("kubectl", "get", "job")] = [running] * 20 + [done]  # about a second of polling
    r = experiment_runner(backend)
    fired: list[float] = []
    exp = ExperimentRecord("A4", "t", "ASR 1", SHARD_A.label, "")
    phase = r.drive(exp, "A4", SHARD_A, LoadProfile.constant(10.0, 5.0), r.source(SHARD_A, "A4"), None,
                    events=((0.1, lambda: fired.append(time.time())),))
    assert len(fired) == 1 and fired[0] >= phase.start + 0.1 - 0.02


def test_a_re_spread_layout_draws_its_flow_here_without_a_flow_description():
    """--max-shards 4: shard d exists only in the stack's layout; FlowSpecs rebuild the standard map elsewhere."""
    from matchlab.loadgen.driver import DescribedSource
    from matchlab.topology import spread_symbols

    four = spread_symbols(4)
    ep = Endpoints(shards={s: f"http://127.0.0.1:808{i}" for i, s in enumerate("abcd", 1)},
                   shard_metrics={s: f"http://127.0.0.1:919{i}/metrics" for i, s in enumerate("abcd", 1)},
                   gateway="http://127.0.0.1:8080", gateway_metrics=None, prometheus="http://127.0.0.1:9",
                   broker="127.0.0.1:19092", shard_symbols=four)
    r = ExperimentRunner(FakeStack(FakeBackend(), ep), PROFILES["quick"], "run-20261127-160000", progress=lambda line: None)
    for shards in ("a", "abcd"):
        source = r.source(Route(tuple(shards), via_gateway=True), "S1")
        assert not isinstance(source, DescribedSource)
        assert {source().target for _ in range(400)} == set(shards)  # every shard of the route, and only those
    assert isinstance(experiment_runner(FakeBackend()).source(GATEWAY_ABC, "B2"), DescribedSource)  # the standard map: described
