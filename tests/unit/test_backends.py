"""One shape for the backends: one builder, one option table for both parsers, one protocol every backend
meets, and the docker backend's containers described as data."""

from __future__ import annotations

import argparse
import inspect

import pytest

from matchlab.backends import build_backend
from matchlab.containers.backend import UP_LEDGER_FILE, DockerBackend, run_name
from matchlab.containers.recorded import RecordedContainers
from matchlab.containers.services import BROKER, PROMETHEUS, PROMETHEUS_CONFIG, container_specs, journal_volume
from matchlab.k8s.backend import ExistingClusterBackend, K3dBackend
from matchlab.k8s.ledger import RecordedCluster
from matchlab.settings import OPTIONS, PYTEST, UP, HarnessOptions, Profile, add_options, settings_from, settings_problem
from matchlab.stack.backend import Backend
from matchlab.stack.local import LocalBackend
from matchlab.stack.recorded import RecordedStack
from matchlab.stack.spec import Topology
from matchlab.topology import CPU_BUDGETS, MEMORY_BUDGETS, quantity_bytes
from tests.unit.fake_backend import FakeBackend

BACKEND_CLASSES = [LocalBackend, DockerBackend, K3dBackend, ExistingClusterBackend, RecordedStack, RecordedCluster,
                   RecordedContainers, FakeBackend]
PROTOCOL_METHODS = [name for name, member in inspect.getmembers(Backend) if inspect.isfunction(member)
                    and not name.startswith("_")]


def options(**given) -> HarnessOptions:
    return HarnessOptions(**{"backend": "local", "profile": Profile.QUICK, "keep_stack": False, "reports_dir": None,
                             "kube_context": None, "image_registry": None, "plan": False, **given})


@pytest.mark.parametrize("cls", BACKEND_CLASSES, ids=lambda c: c.__name__)
def test_every_backend_answers_every_capability_of_the_protocol(cls):
    assert {"load_driver", "processes", "pause_broker", "kill_service", "restart_service"} <= set(PROTOCOL_METHODS)
    missing = [name for name in PROTOCOL_METHODS if not callable(getattr(cls, name, None))]
    assert not missing, f"{cls.__name__} lacks {missing}"
    assert isinstance(getattr(cls, "name", "") or "set in __init__", str)


@pytest.mark.parametrize("backend, cls", [("local", LocalBackend), ("docker", DockerBackend), ("k3d", K3dBackend)])
def test_one_builder_makes_every_backend(tmp_path, backend, cls):
    built = build_backend(options(backend=backend, reports_dir=tmp_path))
    assert type(built) is cls and isinstance(built, Backend)


def test_up_gets_its_own_records(tmp_path):
    assert build_backend(options(backend="docker", reports_dir=tmp_path), up=True).ledger.path.name == UP_LEDGER_FILE
    assert build_backend(options(reports_dir=tmp_path), up=True).registry.path.name == "up-pids.json"


def test_one_option_table_feeds_both_parsers(pytestconfig):
    up = argparse.ArgumentParser()
    add_options(up.add_argument, UP)
    up_flags = {a.option_strings[0] for a in up._actions if a.option_strings and a.dest != "help"}
    assert up_flags == {o.flag for o in OPTIONS if UP in o.where}
    for option in OPTIONS:
        if PYTEST in option.where:  # this very session's parser has every pytest row (unknown: ValueError)
            pytestconfig.getoption(option.flag)
    assert {"--backend", "--gateway-workers", "--cpuset-cpus", "--profile"} <= {
        o.flag for o in OPTIONS if set(o.where) == {PYTEST, UP}}
    read = up.parse_args(["--backend", "docker", "--cpuset-cpus", "1", "--profile", "quick"])
    opts = settings_from(lambda option: getattr(read, option.dest), UP, reports_dir="r")
    assert (opts.backend, opts.cpuset_cpus, opts.profile, opts.keep_stack) == ("docker", "1", Profile.QUICK, False)


@pytest.mark.parametrize("given, message", [
    ({"backend": "local", "cpuset_cpus": "1"}, "--cpuset-cpus applies to --backend docker"),
    ({"backend": "docker", "load_workers": 2}, "--load-workers applies to the local and Kubernetes backends"),
    ({"backend": "docker", "plan": True}, "--plan applies to the Kubernetes backends"),
    ({"backend": "docker", "max_shards": 4}, "--max-shards above 3 needs the local backend"),
    ({"backend": "docker", "expose_on": "0.0.0.0"}, "--expose-on applies to --backend k3d"),
])
def test_settings_that_do_not_fit_are_named_once_for_both_callers(given, message):
    assert message in settings_problem(options(**given))


def test_the_docker_stack_is_one_container_spec_per_service():
    specs = container_specs(Topology.MULTI, "token")
    assert [s.name for s in specs] == [BROKER, "me-shard-a", "me-relay-a", "me-shard-b", "me-relay-b", "me-shard-c",
                                       "me-relay-c", "edge-gateway", PROMETHEUS]
    for spec in specs:
        assert spec.budget in CPU_BUDGETS and spec.budget in MEMORY_BUDGETS and spec.ports
    assert [s.wave for s in specs] == [0, 1, 1, 1, 1, 1, 1, 2, 3]  # broker, shards and relays at once, gateway, ...
    shard, relay = specs[1], specs[2]
    assert shard.volumes == {journal_volume("a"): "/data"} and shard.ready.path == "/ready"
    assert shard.environment["KAFKA_BOOTSTRAP"] == "broker:9092" and shard.environment["BIND_HOST"] == "0.0.0.0"
    assert shard.environment["ADMIN_TOKEN"] == "token" and shard.environment["WAL_PATH"] == "/data"
    # The relay: the shard's image and journal volume, its own command and port, no admin token.
    assert relay.image == shard.image and relay.volumes == shard.volumes and relay.budget == "relay"
    assert relay.command == ("python", "-m", "matchlab.relay") and relay.ready.port == relay.metrics_port == 9093
    assert "ADMIN_TOKEN" not in relay.environment and relay.environment["WAL_PATH"] == "/data"
    gateway = specs[7]
    assert "a=http://me-shard-a:8080" in gateway.environment["ME_SHARD_MAP"] and gateway.ready.path == "/health"
    config = specs[8].files[PROMETHEUS_CONFIG]
    assert "me-shard-c:9091" in config and "edge-gateway:9091" in config and "recording-rules.yaml" in config
    assert "me-relay-b:9093" in config
    assert [s.name for s in container_specs(Topology.SINGLE, "t")] == [BROKER, "me-shard-a", "me-relay-a", PROMETHEUS]


def test_names_and_memory_budgets_as_the_engine_takes_them(tmp_path):
    assert run_name(tmp_path / "run-20261207-120000" / "multi", Topology.MULTI) == "matchlab-run-20261207-120000-multi"
    assert quantity_bytes("1Gi") == 1 << 30 and quantity_bytes("512Mi") == 512 << 20 and quantity_bytes("7") == 7


def test_a_missing_or_stopped_engine_is_one_line_and_exit_3(monkeypatch, tmp_path, capsys):
    from matchlab.cli.main import EXIT_PREREQUISITE, main

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")  # nothing answers there
    reports = tmp_path / "reports"
    assert main(["up", "--backend", "docker", "--reports-dir", str(reports)]) == EXIT_PREREQUISITE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("matchlab up: ") and "docker engine" in err.lower()
    assert "install" in err or "start it" in err  # what to do: install it, or start the one installed
    assert not reports.exists() or not any(reports.iterdir())  # nothing created, nothing recorded
