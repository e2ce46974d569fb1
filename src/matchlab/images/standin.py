"""A stand-in for the official Python base image, built from Debian's packages where no registry answers.

``debootstrap --variant=minbase`` lays out Debian bookworm with python3.11, pip and the CA certificates;
the tree then gets what the official image offers the Dockerfile (``python`` and ``pip`` on PATH, pip
free to install system-wide) and the machine's CA bundle, and is imported under the base's name with a
label saying what it is. Needs root and debootstrap; about half a minute here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from matchlab.errors import CommandError, PrerequisiteError

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3.11", "python3-pip", "ca-certificates")
STAND_IN_LABEL = "matchlab.stand-in"
DEBOOTSTRAP_TIMEOUT_S = 900
WORK_DIR = Path("/var/tmp")  # a few hundred MB of root file system: not a tmpfs
IMAGE_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
    f"LABEL {STAND_IN_LABEL}=debootstrap-{SUITE}",
)


def debootstrap_argv(root: Path) -> list[str]:
    return ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(root), MIRROR]


def _run(argv: list[str], timeout: float) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
        raise CommandError(f"`{' '.join(argv)}` exited with {proc.returncode}:\n{tail}")


def fit_tree(root: Path, ca_bundle: Path | None) -> None:
    """What the official image gives the Dockerfile: python/pip on PATH, system-wide pip, the CA bundle."""
    (root / "usr/lib/python3.11/EXTERNALLY-MANAGED").unlink(missing_ok=True)
    bin_dir = root / "usr/local/bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, target in (("python", "/usr/bin/python3.11"), ("pip", "/usr/bin/pip3")):
        link = bin_dir / name
        if not link.is_symlink():
            link.symlink_to(target)
    if ca_bundle is not None and ca_bundle.is_file():
        shutil.copyfile(ca_bundle, root / "etc/ssl/certs/ca-certificates.crt")
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for item in (root / cache).glob("*"):
            if item.is_file():
                item.unlink()


def build_stand_in(client, image: str, ca_bundle: Path | None) -> None:
    """Lay out Debian with debootstrap and import it into the engine as ``image``."""
    if os.geteuid() != 0:
        raise PrerequisiteError(f"the base {image} cannot be pulled and building a stand-in with debootstrap needs "
                                f"root: run `matchlab images` as root once, or `docker load` the base")
    if shutil.which("debootstrap") is None:
        raise PrerequisiteError(f"the base {image} cannot be pulled and debootstrap, which builds a stand-in, is "
                                f"missing: `apt-get install debootstrap` (or `WITH_DOCKER=1 bash scripts/setup.sh`)")
    repository, tag = image.rsplit(":", 1)
    work = Path(tempfile.mkdtemp(prefix="matchlab-base-", dir=WORK_DIR))
    try:
        tree, archive = work / "rootfs", work / "rootfs.tar"
        _run(debootstrap_argv(tree), DEBOOTSTRAP_TIMEOUT_S)
        fit_tree(tree, ca_bundle)
        _run(["tar", "--numeric-owner", "-C", str(tree), "-cf", str(archive), "."], DEBOOTSTRAP_TIMEOUT_S)
        client.api.import_image_from_file(str(archive), repository=repository, tag=tag, changes=list(IMAGE_CHANGES))
    finally:
        shutil.rmtree(work, ignore_errors=True)
