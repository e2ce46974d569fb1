"""One builder of backends, for the pytest plugin and the ``matchlab`` CLI alike.

``build_backend`` reads the run's settings (``matchlab.settings.HarnessOptions``) and returns the
backend they ask for; the experiments never know which. ``up=True`` gives a backend whose records are
``matchlab up``'s own (its PID registry, its container ledger), so a test run never reaps a stack left
running on purpose.
"""

from __future__ import annotations

from matchlab.settings import HarnessOptions
from matchlab.stack.backend import Backend

UP_LEDGER_FILE = "up-docker.json"


def build_backend(opts: HarnessOptions, shard_symbols: dict[str, list[str]] | None = None, *,
                  up: bool = False) -> Backend:
    """The backend the settings ask for. ``shard_symbols``: a re-spread layout (local and docker only:
    ``--max-shards`` refuses the others)."""
    if opts.backend in ("k3d", "k8s"):
        from matchlab.k8s.backend import LOOPBACK, ExistingClusterBackend, K3dBackend

        load = {"load_from": opts.load_from, "load_workers": opts.load_workers,
                "gateway_replicas": opts.gateway_workers}
        if opts.backend == "k3d":
            return K3dBackend(plan=opts.plan, keep=opts.keep_stack, expose_on=opts.expose_on or LOOPBACK, **load)
        return ExistingClusterBackend(opts.kube_context, opts.image_registry, plan=opts.plan, keep=opts.keep_stack,
                                      **load)
    if opts.backend == "docker":
        from matchlab.containers.backend import LEDGER_FILE, DockerBackend

        return DockerBackend(opts.reports_dir, UP_LEDGER_FILE if up else LEDGER_FILE, shard_symbols=shard_symbols,
                             gateway_workers=opts.gateway_workers, cpuset=opts.cpuset_cpus)
    from matchlab.stack.local import PID_FILE, LocalBackend
    from matchlab.stack.state import UP_PID_FILE

    shard_env = {"INJECT_MATCH_DELAY_MS": str(opts.inject_match_delay_ms)} if opts.inject_match_delay_ms else {}
    return LocalBackend(opts.reports_dir, UP_PID_FILE if up else PID_FILE, shard_symbols=shard_symbols,
                        load_workers=opts.load_workers, shard_env=shard_env, gateway_workers=opts.gateway_workers)
