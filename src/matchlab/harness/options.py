"""Command-line options, validated once in pytest_configure (bad combinations: UsageError)."""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import pytest

from matchlab.topology import MAX_SHARDS, SHARD_IDS


class Profile(enum.Enum):
    QUICK = "quick"
    FULL = "full"


BACKENDS = ("local", "k3d", "k8s")


@dataclass(frozen=True)
class HarnessOptions:
    backend: str
    profile: Profile
    keep_stack: bool
    reports_dir: Path
    kube_context: str | None
    image_registry: str | None
    plan: bool
    expose_on: str | None = None
    reuse_stack: bool = False
    load_from: str = "host"
    load_workers: int | None = None
    compare_to: Path | None = None  # a finished run to compare this one with at the end
    history_plot: str | None = None  # a headline figure drawn over the runs in report.html
    keep_runs: int | None = None  # prune run folders beyond the newest N at the end (None: keep all)
    max_shards: int = len(SHARD_IDS)  # the scaling search measures N = 1..max_shards shards
    repeat: int = 1  # each experiment runs this many times; one run with that many samples
    inject_match_delay_ms: int = 0  # the local stack's shards wait this long before matching (comparison demo)
    coupled_events: bool = False  # the local stack's shards publish in-process (EVENTS_MODE=inprocess), no relays
    gateway_workers: int = 1  # the local stack's gateway: this many processes on one port (GATEWAY_WORKERS)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("matchlab", "matching-engine experiment harness")
    group.addoption("--backend", choices=BACKENDS, default="local",
                    help="where the stack runs: local processes (default), a k3d cluster, an existing cluster (k8s)")
    group.addoption("--profile", choices=[p.value for p in Profile], default=Profile.FULL.value,
                    help="full: the experiments' full durations (default); quick: shortened, both ASR suites within ~10 min")
    group.addoption("--keep-stack", action="store_true", help="leave the stack running after the session")
    group.addoption("--reuse-stack", action="store_true",
                    help="run against the stack `matchlab up` left in --reports-dir when its topology and backend "
                         "match (and leave it running); otherwise start one as usual")
    group.addoption("--reports-dir", default="reports", help="where run folders (logs, results, charts) go")
    group.addoption("--kube-context", default=None, help="with --backend k8s: the kubeconfig context to use")
    group.addoption("--image-registry", default=None, help="with --backend k8s: registry to push images to")
    group.addoption("--plan", action="store_true", help="print every step the backend would take; run nothing")
    group.addoption("--load-from", choices=("host", "cluster"), default="host",
                    help="Kubernetes backends: generate load on this machine (default) or inside the cluster "
                         "(an Indexed Job of --load-workers pods, one schedule split between them)")
    group.addoption("--load-workers", type=int, default=None, metavar="N",
                    help="how many load generators share each phase's schedule (one seeded schedule, N disjoint "
                         "segments, one merged result): with --load-from cluster, N pods (default: one per agent "
                         "node); on the local backend, N >= 2 processes on this machine (default: the load runs "
                         "in pytest's own process)")
    group.addoption("--history-plot", default=None, metavar="FIGURE",
                    help="add FIGURE (e.g. A2.p99, or 'A2 client p99 ms') over the earlier runs of the reports "
                         "directory, change points marked, to report.html (python -m matchlab.history lists them)")
    group.addoption("--compare-to", default=None, metavar="RUN",
                    help="at the end, compare this run with RUN (a reports/run-* folder or its results.json), "
                         "as python -m matchlab.compare RUN <this run> would")
    group.addoption("--keep-runs", type=int, default=None, metavar="N",
                    help="at the end, delete the oldest reports/run-* folders beyond the newest N, this one "
                         "included (default: keep every run; reports/history.jsonl keeps their lines)")
    group.addoption("--max-shards", type=int, default=len(SHARD_IDS), metavar="K",
                    help=f"the scaling search (S1) measures 1..K shards behind the gateway, the symbols re-spread "
                         f"over K shards when K > {len(SHARD_IDS)} (local backend; {len(SHARD_IDS)} to {MAX_SHARDS}, "
                         f"default {len(SHARD_IDS)})")
    group.addoption("--repeat", type=int, default=1, metavar="N",
                    help="run each chosen experiment N times in this session (books reset before each) and store "
                         "them as one run with N samples: verdicts judge every repetition (a criterion's status is "
                         "its worst), python -m matchlab.compare pools them (default 1)")
    group.addoption("--inject-match-delay-ms", type=int, default=0, metavar="MS",
                    help="local backend: every shard waits MS ms between an order being durable and matching it "
                         "(INJECT_MATCH_DELAY_MS), an injected regression to show what a comparison detects; "
                         "recorded in the run's facts")
    group.addoption("--coupled-events", action="store_true",
                    help="local backend: each shard publishes its own events from the matching process "
                         "(EVENTS_MODE=inprocess) instead of through its relay: the coupled design, to show what "
                         "a broker outage does to it (A4); recorded in the run's facts")
    group.addoption("--gateway-workers", type=int, default=1, metavar="N",
                    help="the gateway as N processes sharing its port (local: GATEWAY_WORKERS, SO_REUSEPORT, "
                         "metrics merged) or N replicas of its Deployment (k3d, k8s), for machines with cores to "
                         "spare (default 1)")
    group.addoption("--expose-on", default=None, metavar="ADDRESS",
                    help="with --backend k3d: bind the cluster's port mappings on ADDRESS instead of 127.0.0.1 "
                         "(0.0.0.0: every interface; the stack is then reachable from your network)")


def backend_options_problem(backend: str, kube_context: str | None, image_registry: str | None,
                            expose_on: str | None) -> str | None:
    """What is wrong with the backend's options (pytest's and `matchlab up`'s), or None."""
    if backend != "k8s" and (kube_context or image_registry):
        return "--kube-context and --image-registry only apply to --backend k8s"
    if backend == "k8s" and not (kube_context and image_registry):
        return ("--backend k8s needs --kube-context NAME (the existing cluster) and --image-registry HOST/PATH "
                "(where its nodes can pull the images from)")
    if expose_on is not None and backend != "k3d":
        return "--expose-on applies to --backend k3d (the local backend binds 127.0.0.1 only)"
    if expose_on is not None:
        try:
            ipaddress.ip_address(expose_on)
        except ValueError:
            return f"--expose-on wants an IP address of this machine, got {expose_on!r}"
    return None


def load_options_problem(backend: str, load_from: str, load_workers: int | None, max_shards: int) -> str | None:
    """What is wrong with where the load comes from, or None."""
    if load_from == "cluster" and backend == "local":
        return ("--load-from cluster applies to the Kubernetes backends (k3d, k8s); on the local backend "
                "--load-workers N runs the load as N processes")
    if load_workers is None:
        return None
    if backend == "local":
        if load_workers < 2:
            return (f"--load-workers N on the local backend runs N load-generator processes (N >= 2; without it "
                    f"the load runs in pytest's own process), got {load_workers}")
        if max_shards > len(SHARD_IDS):
            return (f"--load-workers with --max-shards above {len(SHARD_IDS)}: the load generator's command line "
                    f"knows the three-shard symbol map only, not a re-spread one; drop one of the two")
        return None
    if load_from != "cluster" or load_workers < 1:
        return "--load-workers N (N >= 1) on a Kubernetes backend goes with --load-from cluster"
    return None


def pytest_configure(config: pytest.Config) -> None:
    opts = HarnessOptions(
        backend=config.getoption("--backend"),
        profile=Profile(config.getoption("--profile")),
        keep_stack=config.getoption("--keep-stack"),
        reports_dir=Path(config.getoption("--reports-dir")).resolve(),
        kube_context=config.getoption("--kube-context"),
        image_registry=config.getoption("--image-registry"),
        plan=config.getoption("--plan"),
        expose_on=config.getoption("--expose-on"),
        reuse_stack=config.getoption("--reuse-stack"),
        load_from=config.getoption("--load-from"),
        load_workers=config.getoption("--load-workers"),
        compare_to=Path(config.getoption("--compare-to")) if config.getoption("--compare-to") else None,
        history_plot=config.getoption("--history-plot"),
        keep_runs=config.getoption("--keep-runs"),
        max_shards=config.getoption("--max-shards"),
        repeat=config.getoption("--repeat"),
        inject_match_delay_ms=config.getoption("--inject-match-delay-ms"),
        coupled_events=config.getoption("--coupled-events"),
        gateway_workers=config.getoption("--gateway-workers"),
    )
    check_max_shards(opts.max_shards, opts.backend)
    problem = repeat_and_delay_problem(opts)
    if problem:
        raise pytest.UsageError(problem)
    if opts.keep_runs is not None and opts.keep_runs < 1:
        raise pytest.UsageError(f"--keep-runs N keeps at least this run (N >= 1), got {opts.keep_runs}")
    if opts.compare_to is not None:
        from matchlab.compare.runs import load_results
        from matchlab.errors import ConfigError

        try:  # refuse a baseline that cannot be compared before the run, not after it
            load_results(opts.compare_to)
        except ConfigError as exc:
            raise pytest.UsageError(f"--compare-to: {exc}") from None
    problem = backend_options_problem(opts.backend, opts.kube_context, opts.image_registry, opts.expose_on)
    if problem:
        raise pytest.UsageError(problem)
    problem = load_options_problem(opts.backend, opts.load_from, opts.load_workers, opts.max_shards)
    if problem:
        raise pytest.UsageError(problem)
    if opts.plan and opts.backend == "local":
        raise pytest.UsageError("--plan applies to the Kubernetes backends (k3d, k8s); the local backend has no plan")
    config.stash[OPTIONS_KEY] = opts


def repeat_and_delay_problem(opts: HarnessOptions) -> str | None:
    if opts.repeat < 1:
        return f"--repeat N runs each experiment N >= 1 times, got {opts.repeat}"
    if opts.inject_match_delay_ms < 0:
        return f"--inject-match-delay-ms takes a delay of 0 ms or more, got {opts.inject_match_delay_ms}"
    if opts.inject_match_delay_ms and opts.backend != "local":
        return "--inject-match-delay-ms applies to the local backend (its shards are started with the setting)"
    if opts.inject_match_delay_ms and opts.reuse_stack:
        return "--inject-match-delay-ms needs shards started with it: it does not go with --reuse-stack"
    if opts.coupled_events and opts.backend != "local":
        return "--coupled-events applies to the local backend (its shards are started with EVENTS_MODE=inprocess)"
    if opts.coupled_events and opts.reuse_stack:
        return "--coupled-events needs shards started with it: it does not go with --reuse-stack"
    if opts.gateway_workers > 1 and opts.reuse_stack:
        return ("--gateway-workers is set when the stack starts: give it to `matchlab up`, not with --reuse-stack "
                "(the reused stack keeps the gateway it was started with)")
    return gateway_workers_problem(opts.gateway_workers, opts.backend)


def gateway_workers_problem(workers: int, backend: str) -> str | None:
    """What is wrong with --gateway-workers (pytest's and `matchlab up`'s), or None."""
    from matchlab.gateway.config import MAX_WORKERS

    if not 1 <= workers <= MAX_WORKERS:
        unit = "processes" if backend == "local" else "replicas"
        return f"--gateway-workers N takes 1 to {MAX_WORKERS} {unit}, got {workers}"
    return None


def check_max_shards(max_shards: int, backend: str) -> None:
    """The verdict needs capacity(3); more than the standard three shards need a layout only the local backend runs."""
    if not len(SHARD_IDS) <= max_shards <= MAX_SHARDS:
        raise pytest.UsageError(f"--max-shards K takes {len(SHARD_IDS)} to {MAX_SHARDS} (the scaling verdict needs "
                                f"N = 1..3; 12 symbols go at least two to a shard), got {max_shards}")
    if max_shards > len(SHARD_IDS) and backend != "local":
        raise pytest.UsageError(f"--max-shards above {len(SHARD_IDS)} needs the local backend (the manifests deploy "
                                f"the standard {len(SHARD_IDS)} shards), got --backend {backend}")


OPTIONS_KEY = pytest.StashKey[HarnessOptions]()


def harness_options(config: pytest.Config) -> HarnessOptions:
    return config.stash[OPTIONS_KEY]
