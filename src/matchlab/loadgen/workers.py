"""Several load-generator workers for one schedule: the command line each runs, and running them as processes.

The same worker command line serves the in-cluster Job's pods (``matchlab.k8s.load_job``) and local
processes (``python -m matchlab.loadgen --processes N``, the harness's ``--load-workers N`` on the local
backend through ``matchlab.loadgen.process_driver``): the profile written out exactly, the seed, and
this worker's segment with the common start time. Processes are stopped by PID on any way out.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from matchlab.errors import ProcessError
from matchlab.interrupts import interrupt_after
from matchlab.loadgen.profile import LoadProfile
from matchlab.loadgen.segments import read_result_lines

COMPLETION_GRACE_S = 60  # the last requests' timeout, the result lines, the exit
POLL_S = 0.1
PROCESS_START_S, PROCESS_START_EACH_S = 2.0, 0.5  # interpreters starting on a busy machine


def start_lead_s(processes: int) -> float:
    """How far ahead a common start time must be for this many worker processes to be up by then."""
    return PROCESS_START_S + PROCESS_START_EACH_S * processes


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


def run_worker_processes(args_of: Sequence[list[str]], timeout_s: float, names: Sequence[str] | None = None,
                         on_start: Callable[[list[subprocess.Popen]], None] | None = None) -> list[dict]:
    """Run one ``python -m matchlab.loadgen`` per argument list at once; their measurements, in order.

    Output goes to files (a long phase's result lines outgrow a pipe's buffer while another worker is
    waited for). The first worker to fail stops the others at once and is named in the error; a timeout
    raises ``subprocess.TimeoutExpired``. Whatever happens (Ctrl-C included) every process started here
    is killed by its process group before this returns, and no other.
    """
    names = list(names or [f"worker {i}" for i in range(len(args_of))])
    with tempfile.TemporaryDirectory(prefix="matchlab-load-") as tmp:
        procs: list[subprocess.Popen] = []
        try:
            with interrupt_after():
                for i, args in enumerate(args_of):
                    with open(Path(tmp) / f"{i}.out", "w") as out, open(Path(tmp) / f"{i}.err", "w") as err:
                        procs.append(subprocess.Popen([sys.executable, "-m", "matchlab.loadgen", *args],
                                                      stdout=out, stderr=err, text=True, start_new_session=True))
            if on_start:
                on_start(procs)
            failed = _wait_all(procs, timeout_s)
        finally:
            for proc in procs:  # Ctrl-C, a timeout, a failed sibling or an error: none is left behind
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if failed is not None:
            tail = (Path(tmp) / f"{failed}.err").read_text().strip()[-600:] or "(nothing on stderr)"
            proc = procs[failed]
            raise ProcessError(f"load {names[failed]} (pid {proc.pid}) exited {proc.returncode}; the other workers "
                               f"were stopped. Its stderr:\n{tail}")
        return [read_result_lines((Path(tmp) / f"{i}.out").read_text(), names[i]) for i in range(len(procs))]


def _wait_all(procs: Sequence[subprocess.Popen], timeout_s: float) -> int | None:
    """Until every process has exited (None) or one failed (its index); past the timeout, TimeoutExpired."""
    deadline = time.monotonic() + timeout_s
    while True:
        codes = [proc.poll() for proc in procs]
        failed = next((i for i, code in enumerate(codes) if code not in (None, 0)), None)
        if failed is not None or all(code == 0 for code in codes):
            return failed
        if time.monotonic() > deadline:
            raise subprocess.TimeoutExpired([p.args for p in procs], timeout_s)
        time.sleep(POLL_S)
