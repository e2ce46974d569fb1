"""kubectl and helm against one cluster: every command through the run's ``CommandRunner`` (so ``--plan``
prints exactly what a run does), with the cluster's own arguments (a private kubeconfig, or an existing
context), and server-side apply with the namespace passed explicitly every time."""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from matchlab.k8s.commands import CommandRunner

WAIT_TIMEOUT_S = 600
WAIT_TIMEOUT = f"{WAIT_TIMEOUT_S}s"
POLL_S = 1.0
HELM_TIMEOUT = "10m"


@dataclass
class Kube:
    runner: CommandRunner
    args: list[str] = field(default_factory=list)  # ["--kubeconfig", PATH] or ["--context", NAME]

    def kubectl(self, *args: str, input_text: str | None = None, check: bool = True) -> str:
        return self.runner.run(["kubectl", *self.args, *args], check=check, input_text=input_text)

    def helm(self, *args: str) -> str:
        helm_kube = [a.replace("--context", "--kube-context") for a in self.args]
        return self.runner.run(["helm", *helm_kube, *args])

    def apply(self, docs: list[dict], namespace: str | None) -> None:
        if not docs:
            return
        objects = ", ".join(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
        self.runner.note(f"server-side apply{' in ' + namespace if namespace else ''}: {objects}")
        ns = ["-n", namespace] if namespace else []
        self.kubectl("apply", "--server-side", "--field-manager=matchlab", *ns, "-f", "-",
                     input_text="---\n".join(yaml.safe_dump(d) for d in docs))
