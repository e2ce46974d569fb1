"""The k3d backend gets its images from the one build function, and imports and deploys exactly those tags."""

from __future__ import annotations

import json

import yaml

from matchlab.k8s import backend as backend_module
from matchlab.k8s.backend import APP_IMAGES, CLUSTER, K3dBackend
from matchlab.k8s.commands import RecordingRunner
from matchlab.stack.spec import Topology
from tests.unit.fake_engine import Client, engine_with_base


def test_k3d_builds_through_build_images_then_imports_and_deploys_the_tags_it_built(monkeypatch, tmp_path):
    engine = engine_with_base()
    built_tags: list[str] = []

    def crictl_images() -> str:  # every node lists what the import brought: the tags the engine built
        built_tags[:] = [tag for _, tag, _, _ in engine.builds]
        return json.dumps({"images": [{"repoTags": [f"docker.io/{t}" for t in built_tags]}]})

    class Runner(RecordingRunner):
        def run(self, argv, check=True, input_text=None):
            out = super().run(argv, check, input_text)
            return crictl_images() if argv[:2] == ["docker", "exec"] else out

    runner = Runner()
    monkeypatch.setattr(backend_module, "check_prerequisites", lambda **_: None)
    monkeypatch.setattr(K3dBackend, "docker_client", lambda self: Client(engine))
    monkeypatch.setattr(K3dBackend, "open_prometheus", lambda self, run_dir: None)
    backend = K3dBackend(runner=runner)
    backend.start(Topology.MULTI, tmp_path / "run-1" / "multi")

    assert [target for target, *_ in engine.builds] == list(APP_IMAGES)  # through matchlab.images.build_images
    assert all(tag.split(":")[1].startswith("0.1.0-") for tag in built_tags)
    imports = [c for c in runner.commands() if c[:3] == ("k3d", "image", "import")]
    assert imports == [("k3d", "image", "import", *built_tags, "--cluster", CLUSTER)]
    applied = [yaml.safe_load(d) for argv, text in runner.inputs if "apply" in argv for d in text.split("---\n")]
    deployed = {c["image"] for d in applied if d["kind"] == "Deployment" and d["metadata"]["namespace"] ==
                "matching-engine" for c in d["spec"]["template"]["spec"]["containers"]}
    assert deployed == set(built_tags)
    assert backend.facts()["images"] == ", ".join(built_tags)
