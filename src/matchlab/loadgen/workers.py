"""Several load-generator workers for one schedule: the command line each runs, and running them as processes.

The same worker command line serves the in-cluster Job's pods (``matchlab.k8s.load_job``) and local
processes (``python -m matchlab.loadgen --processes N``): the profile written out exactly, the seed, and
this worker's segment with the common start time. Processes are stopped by PID on any way out.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence

from matchlab.errors import ProcessError
from matchlab.loadgen.profile import LoadProfile
from matchlab.loadgen.segments import read_result_lines

COMPLETION_GRACE_S = 60  # the last requests' timeout, the result lines, the exit


def profile_args(profile: LoadProfile) -> list[str]:
    """The profile as ``--start-rate``/``--stages``, with every float exact (repr), so the schedule is the same."""
    stages = ",".join(f"{s.duration_s!r}:{s.target_rate!r}" for s in profile.stages)
    return ["--start-rate", repr(profile.start_rate), "--stages", stages]


def worker_args(route: Sequence[str], profile: LoadProfile, workers: int, index: str, start_at: float, *,
                seed: int, mix: str, remote_write: str | None = None, labels: dict[str, str] | None = None,
                extra: Sequence[str] = ()) -> list[str]:
    """One worker's ``python -m matchlab.loadgen`` arguments (``index`` may be a placeholder the kubelet expands)."""
    label_args = [arg for k, v in sorted((labels or {}).items()) for arg in ("--label", f"{k}={v}")]
    return [
        *route, *profile_args(profile), "--seed", str(seed), "--mix", mix, *extra,
        "--workers", str(workers), "--worker-index", index, "--start-at", f"{start_at:.3f}",
        *(["--remote-write", remote_write] if remote_write else []), *label_args, "--result-lines", "--quiet",
    ]


def run_worker_processes(args_of: Sequence[list[str]], timeout_s: float) -> list[dict]:
    """Run one ``python -m matchlab.loadgen`` per argument list at once; their measurements, in order."""
    procs = [subprocess.Popen([sys.executable, "-m", "matchlab.loadgen", *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True) for args in args_of]
    try:
        outputs = [proc.communicate(timeout=timeout_s) for proc in procs]
    finally:
        for proc in procs:  # Ctrl-C, a timeout or an error: none is left behind
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    failed = [(i, proc.returncode, outputs[i][1].strip()[-400:]) for i, proc in enumerate(procs) if proc.returncode]
    if failed:
        raise ProcessError("load workers failed: " + "; ".join(f"worker {i} exited {rc}: {err}" for i, rc, err in failed))
    return [read_result_lines(out, f"worker {i}") for i, (out, _) in enumerate(outputs)]
