"""Session fixtures over matchlab.stack: at most one stack up at a time, always torn down.

``single_stack`` (shard a) and ``multi_stack`` (a, b, c + gateway) come from
one pool that keeps a single stack running: asking for the other topology
stops the current one first, so ASR 1 and ASR 2 never share the machine's
two cores. Everything stops at session end, on failure, on Ctrl-C, and on
SIGTERM (turned into KeyboardInterrupt so teardown runs). With
``--reuse-stack`` a stack that ``matchlab up`` recorded in the reports folder
serves instead, when its topology and backend match, and is left running.
"""

from __future__ import annotations

import logging
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from matchlab.backends import build_backend, recorded_backend
from matchlab.errors import MatchlabError, PrerequisiteError
from matchlab.harness.options import HarnessOptions, harness_options
from matchlab.k8s.cluster import exposure_warning
from matchlab.k8s.commands import RecordingRunner
from matchlab.k8s.load_job import ClusterLoad
from matchlab.loadgen.profile import LoadProfile
from matchlab.stack.backend import Backend
from matchlab.stack.spec import Topology
from matchlab.stack.stack import Stack
from matchlab.stack.state import read_state
from matchlab.topology import SHARD_IDS, spread_symbols

log = logging.getLogger(__name__)


def scaling_layout(max_shards: int) -> dict[str, list[str]] | None:
    """The scaling stack's layout: None (the standard map: the MULTI stack serves) for three shards, else all
    symbols re-spread over ``max_shards``."""
    return None if max_shards == len(SHARD_IDS) else spread_symbols(max_shards)


def make_backend(opts: HarnessOptions, shard_symbols: dict[str, list[str]] | None = None) -> Backend:
    """The backend the options ask for (``matchlab.backends.build_backend``, as the CLI builds it)."""
    return build_backend(opts, shard_symbols)


class StackPool:
    def __init__(self, opts: HarnessOptions, run_dir: Path) -> None:
        self.opts = opts
        self.reports_dir = opts.reports_dir
        self.run_dir = run_dir
        self.keep = opts.keep_stack
        self.current: Stack | None = None
        self.cold_starts: dict[str, float] = {}
        self.reused: dict[str, str] = {}  # topology -> why (or why not) an `up` stack served
        self.failure: str | None = None

    def get(self, topology: Topology) -> Stack:
        layout = scaling_layout(self.opts.max_shards) if topology is Topology.SCALING else None
        if topology is Topology.SCALING and layout is None:
            topology = Topology.MULTI  # three shards: the MULTI stack measures the scaling too, no restart
        if self.current is not None and self.current.topology is topology:
            return self.current
        self.close()
        if self.failure:
            pytest.fail(self.failure, pytrace=False)
        if self.opts.reuse_stack:
            reused = self._reuse(topology)
            if reused is not None:
                self.current = reused
                return reused
        stack = Stack(make_backend(self.opts, layout), topology, self.run_dir / topology.value, keep=self.keep)
        try:
            stack.start()
        except PrerequisiteError as exc:
            # Nothing can run without it: stop the whole session at once, with one message.
            pytest.exit(f"missing prerequisite: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)
        except MatchlabError as exc:
            # One clear message (missing binary, port taken, service not ready), no traceback;
            # and the same for every later test instead of retrying a broken start.
            self.failure = f"the {topology.value} stack could not start: {exc}"
            pytest.fail(self.failure, pytrace=False)
        self.cold_starts[topology.value] = stack.cold_start_s
        self.current = stack
        return stack

    def _reuse(self, topology: Topology) -> Stack | None:
        """The stack `matchlab up` recorded, if it fits and every service still runs; else None (and why)."""
        record = read_state(self.reports_dir)
        why = None
        if record is None:
            why = f"no stack recorded in {self.reports_dir} (start one with `matchlab up`)"
        elif (record.backend, record.topology) != (self.opts.backend, topology):
            why = f"the recorded stack is {record.topology.value} on {record.backend}, not {topology.value} on {self.opts.backend}"
        elif len(record.alive()) != len(record.services):
            why = "the recorded stack is partly down (see `matchlab status`)"
        if why is None:
            try:
                backend = recorded_backend(record, self.reports_dir, self.opts.load_workers)
            except MatchlabError as exc:
                why = str(exc).splitlines()[0]
        if why is not None:
            self.reused[topology.value] = f"not reused: {why}; started one"
            return None
        self.reused[topology.value] = f"reused the stack `matchlab up` left running ({record.run_dir})"
        return Stack(backend, topology, self.run_dir / topology.value, keep=True).start()

    def close(self) -> None:
        if self.current is not None:
            stack, self.current = self.current, None
            stack.stop()


def _sigterm_as_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM tears down like Ctrl-C for the whole session: every fixture's teardown runs."""
    config.stash[SIGTERM_KEY] = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)


def pytest_unconfigure(config: pytest.Config) -> None:
    previous = config.stash.get(SIGTERM_KEY, None)
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


SIGTERM_KEY = pytest.StashKey[object]()


@pytest.fixture(scope="session")
def run_dir(pytestconfig: pytest.Config) -> Path:
    opts = harness_options(pytestconfig)
    path = opts.reports_dir / time.strftime("run-%Y%m%d-%H%M%S")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def stack_pool(pytestconfig: pytest.Config, run_dir: Path) -> Iterator[StackPool]:
    pool = StackPool(harness_options(pytestconfig), run_dir)
    pytestconfig.stash[POOL_KEY] = pool
    try:
        yield pool
    finally:
        pool.close()


POOL_KEY = pytest.StashKey[StackPool]()


@pytest.fixture
def single_stack(stack_pool: StackPool) -> Stack:
    return stack_pool.get(Topology.SINGLE)


@pytest.fixture
def multi_stack(stack_pool: StackPool) -> Stack:
    return stack_pool.get(Topology.MULTI)


def example_cluster_load(backend) -> ClusterLoad:
    """What --plan shows for every load phase run in the cluster: a 60 s phase at 80 orders/s via the gateway."""
    workers = backend.load_workers or backend.default_load_workers()
    return ClusterLoad("loadgen-example", LoadProfile.constant(80.0, 60.0), workers, labels={"run": "plan"})


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """Warn about --expose-on; --plan: print every step the chosen backend would take, execute none, and stop."""
    opts = harness_options(session.config)
    warning = exposure_warning(opts.expose_on) if opts.expose_on else None
    if warning:
        session.config.get_terminal_writer().line(f"matchlab WARNING: {warning}", yellow=True, bold=True)
    if not opts.plan:
        return
    backend = make_backend(opts)
    runner: RecordingRunner = backend.runner
    with tempfile.TemporaryDirectory() as tmp:
        backend.start(Topology.MULTI, Path(tmp) / "plan" / "multi")
    if opts.load_from == "cluster":
        backend.run_load_in_cluster(example_cluster_load(backend))
    writer = session.config.get_terminal_writer()
    writer.line(f"plan for --backend {opts.backend} ({len(runner.steps)} steps, nothing executed):")
    for i, step in enumerate(runner.steps, 1):
        writer.line(f"{i:3}. {step}")
    pytest.exit("plan printed; nothing was executed", returncode=0)


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    pool = config.stash.get(POOL_KEY, None)
    if pool is not None:
        for topology, what in pool.reused.items():
            terminalreporter.write_line(f"matchlab: {topology} stack: {what}")
    if pool is not None and pool.cold_starts:
        starts = ", ".join(f"{t} {s:.1f} s" for t, s in pool.cold_starts.items())
        terminalreporter.write_line(f"matchlab: stack cold start: {starts}; run folder {pool.run_dir}")
