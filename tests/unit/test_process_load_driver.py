"""``--load-workers N`` on the local backend: the option's checks and each worker's exact command line."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from matchlab.errors import ConfigError
from matchlab.experiment.criteria import client_p99_note
from matchlab.experiment.profiles import PROFILES
from matchlab.experiment.record import PhaseRecord, RunRecord
from matchlab.experiment.runner import ExperimentRunner, Route
from matchlab.harness.options import HarnessOptions, Profile, load_options_problem
from matchlab.harness.stack import make_backend
from matchlab.k8s.backend import K3dBackend
from matchlab.loadgen.__main__ import build_parser, parse_stages
from matchlab.loadgen.driver import HostLoadDriver, PhaseLoad, driver_for
from matchlab.loadgen.flow import hot_symbol_mix
from matchlab.loadgen.match_rate import AdaptiveRateProfile
from matchlab.loadgen.process_driver import ProcessLoadDriver
from matchlab.loadgen.profile import LoadProfile
from matchlab.loadgen.results import Recorder
from matchlab.loadgen.runner import DEFAULT_MAX_IN_FLIGHT
from matchlab.loadgen.targets import interleave
from matchlab.reporting.report import render_report
from matchlab.stack.local import LocalBackend
from matchlab.stack.recorded import RecordedStack
from matchlab.stack.spec import Endpoints, Topology
from matchlab.stack.state import StackRecord

ROOT = Path(__file__).resolve().parents[2]
ENDPOINTS = Endpoints(shards={s: f"http://127.0.0.1:800{i}" for i, s in enumerate("abc")}, shard_metrics={},
                      gateway="http://127.0.0.1:8100", gateway_metrics=None, prometheus="http://127.0.0.1:9090",
                      broker="127.0.0.1:9092")


@dataclass
class FakeStack:
    backend: object
    endpoints: Endpoints


# -- the option ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend, load_from, workers, max_shards, message", [
    ("local", "cluster", None, 3, "--load-from cluster applies to the Kubernetes backends"),
    ("local", "host", 1, 3, "(N >= 2; without it the load runs in pytest's own process), got 1"),
    ("local", "host", 0, 3, "(N >= 2"),
    ("local", "host", 2, 4, "--load-workers with --max-shards above 3"),
    ("k3d", "host", 2, 3, "on a Kubernetes backend goes with --load-from cluster"),
    ("k8s", "cluster", 0, 3, "--load-workers N (N >= 1)"),
])
def test_bad_load_options_are_named(backend, load_from, workers, max_shards, message):
    assert message in load_options_problem(backend, load_from, workers, max_shards)


@pytest.mark.parametrize("backend, load_from, workers", [
    ("local", "host", None), ("local", "host", 2), ("local", "host", 8), ("k3d", "cluster", 1), ("k3d", "host", None),
])
def test_good_load_options_pass(backend, load_from, workers):
    assert load_options_problem(backend, load_from, workers, 3) is None


def test_pytest_refuses_one_local_load_worker_before_anything_runs(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "experiments/test_smoke.py",
                           "--load-workers", "1", "--reports-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 4, proc.stdout + proc.stderr  # pytest's usage error
    assert "--load-workers N on the local backend runs N load-generator processes (N >= 2" in proc.stderr
    assert "Traceback" not in proc.stderr and not list(tmp_path.iterdir())


def test_the_local_backend_offers_the_process_driver_only_with_load_workers(tmp_path):
    assert isinstance(driver_for(LocalBackend(tmp_path)), HostLoadDriver)
    driver = driver_for(LocalBackend(tmp_path, load_workers=3))
    assert isinstance(driver, ProcessLoadDriver) and driver.workers == 3 and not driver.steers_live
    assert "load" not in LocalBackend(tmp_path).facts()  # the run's facts say where the load came from
    assert LocalBackend(tmp_path, load_workers=3).facts()["load"].startswith("3 load-generator processes per phase")
    assert "not steered" in LocalBackend(tmp_path, load_workers=3).facts()["load"]
    assert "not steered" in K3dBackend(plan=True, load_from="cluster", load_workers=2).facts()["load"]
    assert "load" not in K3dBackend(plan=True).facts()


def test_the_report_names_where_the_load_came_from():
    record = RunRecord(backend="local", profile="quick", scaling_note="", facts={"load": "2 load-generator processes"})
    html = render_report(record, {}, complete=True, grafana=None)
    assert "<b>load</b>: 2 load-generator processes" in html
    assert "<b>load</b>" not in render_report(RunRecord(backend="local", profile="quick", scaling_note=""), {},
                                              complete=True, grafana=None)
    with pytest.raises(ConfigError, match="at least two workers"):
        ProcessLoadDriver(1)


def test_the_harness_hands_the_option_to_the_local_backend(tmp_path):
    opts = HarnessOptions(backend="local", profile=Profile.QUICK, keep_stack=False, reports_dir=tmp_path,
                          kube_context=None, image_registry=None, plan=False, load_workers=2)
    assert isinstance(driver_for(make_backend(opts)), ProcessLoadDriver)
    assert isinstance(driver_for(make_backend(replace(opts, load_workers=None))), HostLoadDriver)


def test_a_stack_matchlab_up_left_running_takes_the_option_too(tmp_path):
    """--reuse-stack: the reattached local stack runs the load as processes as well, not silently in pytest's."""
    record = StackRecord("local", Topology.MULTI, str(tmp_path), ENDPOINTS, [])
    assert isinstance(driver_for(RecordedStack(record, tmp_path)), HostLoadDriver)
    assert driver_for(RecordedStack(record, tmp_path, load_workers=2)).workers == 2


# -- the workers' command lines ------------------------------------------------------------------------------


def runner() -> ExperimentRunner:
    return ExperimentRunner(FakeStack(LocalBackend(Path("/nonexistent")), ENDPOINTS), PROFILES["quick"], "run-1",
                            progress=lambda line: None)


def test_each_worker_runs_its_segment_of_its_flow_at_its_share_from_the_common_start():
    r = runner()
    gateway = Route(("a", "b", "c"), True)
    mixed = interleave([(30.0, r.source(gateway, "hot", mix=hot_symbol_mix("TEST-ASSET-B"))),
                        (10.0, r.source(Route(("a",), False), "direct"))])
    phase = PhaseLoad("A4", "A4", LoadProfile.constant(40.0, 60.0), mixed, 1767225600.0,
                      {"run": "run-1", "experiment": "A4", "phase": "A4"}, endpoints=ENDPOINTS)
    argvs, names = ProcessLoadDriver(2).worker_argvs(phase)
    args = [build_parser().parse_args(argv) for argv in argvs]
    assert names == [f"worker {i} of 2 for A4/A4 (flow {f}, seed {f})" for f in (1, 2) for i in (0, 1)]
    assert [(a.worker_index, a.workers, a.start_at) for a in args] == [(i, 2, 1767225600.0) for _ in (1, 2)
                                                                       for i in (0, 1)]
    hot, direct = args[0], args[2]
    assert (hot.gateway, hot.shards, hot.shard, hot.mix, hot.hot_symbol, hot.seed) == (
        "http://127.0.0.1:8100", "a,b,c", [], "hot", "TEST-ASSET-B", 1)
    assert (direct.gateway, direct.shard, direct.mix, direct.seed) == (None, ["a=http://127.0.0.1:8000"],
                                                                      "stationary", 2)
    assert LoadProfile.ramping(hot.start_rate, parse_stages(hot.stages)) == LoadProfile.constant(30.0, 60.0)
    assert LoadProfile.ramping(direct.start_rate, parse_stages(direct.stages)) == LoadProfile.constant(10.0, 60.0)
    assert all(a.remote_write == "http://127.0.0.1:9090/api/v1/write" and a.result_lines and a.quiet for a in args)
    assert hot.label == ["experiment=A4", "flow=1", "phase=A4", "run=run-1"]  # the worker adds worker=<index>
    assert direct.label == ["experiment=A4", "flow=2", "phase=A4", "run=run-1"]
    assert all(a.max_in_flight == -(-DEFAULT_MAX_IN_FLIGHT // 2) for a in args)  # the host's bound, shared


def test_a_single_flow_phase_carries_no_flow_label():
    r = runner()
    gateway = Route(("a", "b", "c"), True)
    phase = PhaseLoad("B1", "B1", LoadProfile.constant(10.0, 5.0), r.source(gateway, "B1"), 0.0, {"run": "x"},
                      endpoints=ENDPOINTS)
    args = [build_parser().parse_args(argv) for argv in ProcessLoadDriver(2).worker_argvs(phase)[0]]
    assert [a.label for a in args] == [["run=x"], ["run=x"]]  # each worker adds worker=<index> itself


def test_what_cannot_run_as_processes_is_refused_before_any_starts():
    r = runner()
    gateway = Route(("a", "b", "c"), True)
    steered = PhaseLoad("B2", "B2", AdaptiveRateProfile(10.0, 5.0), r.source(gateway, "B2"), 0.0, endpoints=ENDPOINTS)
    with pytest.raises(ConfigError, match="live-steered load profile cannot run as load from processes"):
        ProcessLoadDriver(2).worker_argvs(steered)
    subset = PhaseLoad("X", "X", LoadProfile.constant(1.0, 1.0), r.source(gateway, "X", symbols=["TEST-ASSET-A"]), 0.0,
                       endpoints=ENDPOINTS)
    with pytest.raises(ValueError, match="no flow description"):
        ProcessLoadDriver(2).worker_argvs(subset)


def test_an_unsteered_phase_says_so_in_every_verdict_detail_that_notes_its_load():
    load = Recorder().result(20.0, 5.0, 0.0)
    load.extra["load_from"] = "processes"
    phase = PhaseRecord("B2", 0.0, 5.0, 600.0, 20.0, ["a"], load, {}, extra={"fixed_order_rate": 20.0,
                                                                             "steered": False})
    assert "not steered to the match rate: 20.0 orders/s throughout (load from processes), as calibrated" in \
        client_p99_note(phase)
    phase.extra["fill_forecast"] = {"used": True, "window_fills_per_order": 0.977, "warmup_orders": 1729,
                                    "warmup_matches": 1788, "warmup_forecast": 1787, "agreed": True}
    assert ("20.0 orders/s throughout (load from processes): the rate at which the window's own orders make the "
            "target, 0.977 fills per order") in client_p99_note(phase)
    phase.extra = {"fixed_order_rate": 20.0}  # steered during its warm-up, then fixed
    assert "not steered" not in client_p99_note(phase)
