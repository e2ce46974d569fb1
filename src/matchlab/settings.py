"""The run's settings, declared once: one option table feeds pytest's parser and ``matchlab up``'s.

Each ``Option`` row says its flag, its argparse keywords and where it applies (``pytest``, ``up`` or
both); ``add_options`` registers the rows of one parser, ``settings_from`` turns what a parser read into
``HarnessOptions`` (defaults for the rows that parser has not), and ``settings_problem`` finds the one
combination that does not fit, for both callers alike.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from matchlab.shard.config import DEFAULT_EVENTS_OUTBOX_BOUND
from matchlab.topology import MAX_SHARDS, SHARD_IDS


class Profile(enum.Enum):
    QUICK = "quick"
    FULL = "full"


BACKENDS = ("local", "docker", "k3d", "k8s")
KUBERNETES = ("k3d", "k8s")
PYTEST, UP = "pytest", "up"


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
    coupled_events: bool = False  # the local stack's shards publish their own events (EVENTS_MODE=inprocess)
    gateway_workers: int = 1  # the gateway: this many processes on one port (GATEWAY_WORKERS), or replicas
    cpuset_cpus: str | None = None  # docker: the CPUs every container of the stack may run on


@dataclass(frozen=True)
class Option:
    flag: str
    kwargs: dict[str, Any] = field(default_factory=dict)  # as argparse's add_argument takes them
    where: tuple[str, ...] = (PYTEST, UP)
    convert: Callable[[Any], Any] | None = None  # from the parsed value to the HarnessOptions field

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


OPTIONS: tuple[Option, ...] = (
    Option("--backend", {"choices": BACKENDS, "default": "local",
                         "help": "where the stack runs: local processes (default), containers on a Docker engine "
                                 "(docker), a k3d cluster, an existing cluster (k8s)"}),
    Option("--profile", {"choices": [p.value for p in Profile], "default": Profile.FULL.value,
                         "help": "full: the experiments' full durations (default); quick: shortened, both ASR suites within "
                                 "~10 min (matchlab up records it for experiments run against the stack)"},
           convert=Profile),
    Option("--keep-stack", {"action": "store_true", "help": "leave the stack running after the session"}, (PYTEST,)),
    Option("--reuse-stack", {"action": "store_true",
                             "help": "run against the stack `matchlab up` left in --reports-dir when its topology "
                                     "and backend match (and leave it running); otherwise start one as usual"},
           (PYTEST,)),
    Option("--reports-dir", {"default": "reports", "help": "where run folders (logs, results, charts) go"},
           (PYTEST,), convert=lambda v: Path(v).resolve()),
    Option("--kube-context", {"default": None, "metavar": "NAME",
                              "help": "with --backend k8s: the kubeconfig context of the existing cluster"}),
    Option("--image-registry", {"default": None, "metavar": "HOST/PATH",
                                "help": "with --backend k8s: the registry images are pushed to (its nodes pull "
                                        "from it)"}),
    Option("--plan", {"action": "store_true", "help": "print every step the backend would take; run nothing"},
           (PYTEST,)),
    Option("--load-from", {"choices": ("host", "cluster"), "default": "host",
                           "help": "Kubernetes backends: generate load on this machine (default) or inside the "
                                   "cluster (an Indexed Job of --load-workers pods, one schedule split between "
                                   "them)"}, (PYTEST,)),
    Option("--load-workers", {"type": int, "default": None, "metavar": "N",
                              "help": "how many load generators share each phase's schedule (one seeded schedule, "
                                      "N disjoint segments, one merged result): with --load-from cluster, N pods "
                                      "(default: one per agent node); on the local backend, N >= 2 processes on "
                                      "this machine (default: the load runs in pytest's own process)"}, (PYTEST,)),
    Option("--history-plot", {"default": None, "metavar": "FIGURE",
                              "help": "add FIGURE (e.g. A2.p99, or 'A2 client p99 ms') over the earlier runs of the "
                                      "reports directory, change points marked, to report.html (python -m "
                                      "matchlab.history lists them)"}, (PYTEST,)),
    Option("--compare-to", {"default": None, "metavar": "RUN",
                            "help": "at the end, compare this run with RUN (a reports/run-* folder or its "
                                    "results.json), as python -m matchlab.compare RUN <this run> would"},
           (PYTEST,), convert=_path),
    Option("--keep-runs", {"type": int, "default": None, "metavar": "N",
                           "help": "at the end, delete the oldest reports/run-* folders beyond the newest N, this one "
                                   "included (default: keep every run; reports/history.jsonl keeps their lines)"},
           (PYTEST,)),
    Option("--max-shards", {"type": int, "default": len(SHARD_IDS), "metavar": "K",
                            "help": f"the scaling search (S1) measures 1..K shards behind the gateway, the symbols "
                                    f"re-spread over K shards when K > {len(SHARD_IDS)} (local backend; "
                                    f"{len(SHARD_IDS)} to {MAX_SHARDS}, default {len(SHARD_IDS)})"}, (PYTEST,)),
    Option("--repeat", {"type": int, "default": 1, "metavar": "N",
                        "help": "run each chosen experiment N times in this session (books reset before each) and "
                                "store them as one run with N samples: verdicts judge every repetition (a "
                                "criterion's status is its worst), python -m matchlab.compare pools them "
                                "(default 1)"}, (PYTEST,)),
    Option("--inject-match-delay-ms", {"type": int, "default": 0, "metavar": "MS",
                                       "help": "local backend: every shard waits MS ms between an order being "
                                               "durable and matching it (INJECT_MATCH_DELAY_MS), an injected "
                                               "regression to show what a comparison detects; recorded in the "
                                               "run's facts"}, (PYTEST,)),
    Option("--coupled-events", {"action": "store_true",
                                "help": "local backend: each shard publishes its own events from the matching "
                                        "process (EVENTS_MODE=inprocess) instead of through its relay: the coupled "
                                        f"design, its orders waiting once {DEFAULT_EVENTS_OUTBOX_BOUND:,} events await "
                                        "the broker (EVENTS_OUTBOX_BOUND), to show what a broker outage does to it "
                                        "(A4); recorded in the run's facts"}, (PYTEST,)),
    Option("--gateway-workers", {"type": int, "default": 1, "metavar": "N",
                                 "help": "the gateway as N processes sharing its port (local and docker: "
                                         "GATEWAY_WORKERS, SO_REUSEPORT, metrics merged) or N replicas of its "
                                         "Deployment (k3d, k8s), for machines with cores to spare (default 1)"}),
    Option("--expose-on", {"default": None, "metavar": "ADDRESS",
                           "help": "with --backend k3d: bind the cluster's port mappings on ADDRESS instead of "
                                   "127.0.0.1 (0.0.0.0: every interface; the stack is then reachable from your "
                                   "network)"}),
    Option("--cpuset-cpus", {"default": None, "metavar": "CPUS",
                             "help": "with --backend docker: run every container of the stack on these CPUs only "
                                     "(e.g. 1-3), to keep the system under test off the harness' cores"}),
)


def add_options(add: Callable[..., Any], where: str) -> None:
    """Register the table's rows for one parser (``add`` is argparse's add_argument or pytest's addoption)."""
    for option in OPTIONS:
        if where in option.where:
            add(option.flag, dest=option.dest, **option.kwargs)


def settings_from(read: Callable[[Option], Any], where: str, **given: Any) -> HarnessOptions:
    """HarnessOptions from what one parser read (``read(option)``); rows it has not take their defaults."""
    values: dict[str, Any] = {}
    for option in OPTIONS:
        raw = read(option) if where in option.where else option.kwargs.get(
            "default", False if option.kwargs.get("action") == "store_true" else None)
        values[option.dest] = option.convert(raw) if option.convert and raw is not None else raw
    names = {f.name for f in fields(HarnessOptions)}
    return HarnessOptions(**{k: v for k, v in {**values, **given}.items() if k in names})


def backend_options_problem(backend: str, kube_context: str | None, image_registry: str | None,
                            expose_on: str | None, cpuset_cpus: str | None = None) -> str | None:
    """What is wrong with the backend's options (pytest's and `matchlab up`'s), or None."""
    if backend != "k8s" and (kube_context or image_registry):
        return "--kube-context and --image-registry only apply to --backend k8s"
    if backend == "k8s" and not (kube_context and image_registry):
        return ("--backend k8s needs --kube-context NAME (the existing cluster) and --image-registry HOST/PATH "
                "(where its nodes can pull the images from)")
    if expose_on is not None and backend != "k3d":
        return "--expose-on applies to --backend k3d (the local and docker backends bind 127.0.0.1 only)"
    if expose_on is not None:
        try:
            ipaddress.ip_address(expose_on)
        except ValueError:
            return f"--expose-on wants an IP address of this machine, got {expose_on!r}"
    if cpuset_cpus is not None and backend != "docker":
        return "--cpuset-cpus applies to --backend docker (its containers' CPUs)"
    return None


def load_options_problem(backend: str, load_from: str, load_workers: int | None, max_shards: int) -> str | None:
    """What is wrong with where the load comes from, or None."""
    if load_from == "cluster" and backend not in KUBERNETES:
        return (f"--load-from cluster applies to the Kubernetes backends (k3d, k8s), not --backend {backend}; on the "
                f"local backend --load-workers N runs the load as N processes")
    if load_workers is None:
        return None
    if backend == "docker":
        return "--load-workers applies to the local and Kubernetes backends; on docker the load runs in pytest's process"
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


def gateway_workers_problem(workers: int, backend: str) -> str | None:
    """What is wrong with --gateway-workers (pytest's and `matchlab up`'s), or None."""
    from matchlab.gateway.config import MAX_WORKERS

    if not 1 <= workers <= MAX_WORKERS:
        unit = "replicas" if backend in KUBERNETES else "processes"
        return f"--gateway-workers N takes 1 to {MAX_WORKERS} {unit}, got {workers}"
    return None


def max_shards_problem(max_shards: int, backend: str) -> str | None:
    """The verdict needs capacity(3); more than the standard three shards need a layout only the local backend runs."""
    if not len(SHARD_IDS) <= max_shards <= MAX_SHARDS:
        return (f"--max-shards K takes {len(SHARD_IDS)} to {MAX_SHARDS} (the scaling verdict needs N = 1..3; 12 "
                f"symbols go at least two to a shard), got {max_shards}")
    if max_shards > len(SHARD_IDS) and backend != "local":
        return (f"--max-shards above {len(SHARD_IDS)} needs the local backend (the manifests deploy the standard "
                f"{len(SHARD_IDS)} shards), got --backend {backend}")
    return None


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


def settings_problem(opts: HarnessOptions) -> str | None:
    """The first option combination that does not fit, or None: the same rules for pytest and `matchlab up`."""
    if opts.keep_runs is not None and opts.keep_runs < 1:
        return f"--keep-runs N keeps at least this run (N >= 1), got {opts.keep_runs}"
    if opts.plan and opts.backend not in KUBERNETES:
        return f"--plan applies to the Kubernetes backends (k3d, k8s); the {opts.backend} backend has no plan"
    return (max_shards_problem(opts.max_shards, opts.backend) or repeat_and_delay_problem(opts)
            or backend_options_problem(opts.backend, opts.kube_context, opts.image_registry, opts.expose_on,
                                       opts.cpuset_cpus)
            or load_options_problem(opts.backend, opts.load_from, opts.load_workers, opts.max_shards))
