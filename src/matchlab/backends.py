"""One builder of backends, for the pytest plugin and the ``matchlab`` CLI alike.

``build_backend`` reads the run's settings (``matchlab.settings.HarnessOptions``) and returns the
backend they ask for; the experiments never know which. ``up=True`` gives a backend whose records are
``matchlab up``'s own (its PID registry, its container ledger), so a test run never reaps a stack left
running on purpose.
"""

from __future__ import annotations

from pathlib import Path

from matchlab.errors import ProcessError
from matchlab.settings import HarnessOptions
from matchlab.stack.backend import Backend
from matchlab.stack.state import StackRecord


def build_backend(opts: HarnessOptions, shard_symbols: dict[str, list[str]] | None = None, *,
                  up: bool = False, runner=None) -> Backend:
    """The backend the settings ask for. ``shard_symbols``: a re-spread layout (local and docker only:
    ``--max-shards`` refuses the others); ``runner``: what a Kubernetes backend's commands go through."""
    if opts.backend in ("k3d", "k8s"):
        from matchlab.k8s.backend import LOOPBACK, ExistingClusterBackend, K3dBackend

        load = {"load_from": opts.load_from, "load_workers": opts.load_workers,
                "gateway_replicas": opts.gateway_workers, "runner": runner}
        if opts.backend == "k3d":
            return K3dBackend(plan=opts.plan, keep=opts.keep_stack, expose_on=opts.expose_on or LOOPBACK, **load)
        return ExistingClusterBackend(opts.kube_context, opts.image_registry, plan=opts.plan, keep=opts.keep_stack,
                                      **load)
    if opts.backend == "docker":
        from matchlab.containers.backend import LEDGER_FILE, UP_LEDGER_FILE, DockerBackend

        return DockerBackend(opts.reports_dir, UP_LEDGER_FILE if up else LEDGER_FILE, shard_symbols=shard_symbols,
                             gateway_workers=opts.gateway_workers, cpuset=opts.cpuset_cpus)
    from matchlab.shard.config import EventsMode
    from matchlab.stack.local import PID_FILE, LocalBackend
    from matchlab.stack.state import UP_PID_FILE

    shard_env = {"INJECT_MATCH_DELAY_MS": str(opts.inject_match_delay_ms)} if opts.inject_match_delay_ms else {}
    if opts.coupled_events:
        shard_env["EVENTS_MODE"] = EventsMode.INPROCESS.value
    return LocalBackend(opts.reports_dir, UP_PID_FILE if up else PID_FILE, shard_symbols=shard_symbols,
                        load_workers=opts.load_workers, shard_env=shard_env, gateway_workers=opts.gateway_workers)


def recorded_backend(record: StackRecord, reports_dir: Path, load_workers: int | None = None,
                     runner=None) -> Backend:
    """The stack `matchlab up` recorded, as a Backend operating it from this process (its ``stop()`` leaves it
    running); ProcessError saying why when it cannot be reached."""
    if record.backend == "local":
        from matchlab.stack.recorded import RecordedStack

        return RecordedStack(record, reports_dir, load_workers)
    if record.backend == "docker":
        from matchlab.containers.recorded import RecordedContainers

        return RecordedContainers(record, reports_dir)
    from matchlab.k8s.ledger import LEDGER_FILE, RecordedCluster, read_ledger

    ledger = read_ledger(reports_dir)
    if ledger is None:
        raise ProcessError(f"no {reports_dir / LEDGER_FILE} says how to reach the cluster: "
                           "`matchlab down`, then `matchlab up --backend ...` again")
    return RecordedCluster(record, ledger, runner)
