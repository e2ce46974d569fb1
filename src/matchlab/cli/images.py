"""``matchlab images``: build the project's images on the Docker engine, each only when its content changed."""

from __future__ import annotations

import argparse
import time

from matchlab.images.build import build_images
from matchlab.images.targets import OFFICIAL_BASE, TARGETS


def add_parser(verbs) -> None:
    sub = verbs.add_parser("images", help="build the shard, gateway, load-generator, broker and Prometheus images "
                                          "(only those whose content changed)")
    sub.add_argument("targets", nargs="*", metavar="TARGET",
                     help=f"which images (default: all): {', '.join(TARGETS)}")
    sub.add_argument("--base", default=OFFICIAL_BASE,
                     help=f"the base image (default {OFFICIAL_BASE}; where it cannot be pulled, a stand-in is built "
                          "from Debian packages)")
    sub.add_argument("--force", action="store_true", help="build even where an image of the same content exists")
    sub.set_defaults(run=build)


def build(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    images = build_images(args.targets or list(TARGETS), base=args.base, force=args.force,
                          say=lambda line: print(line, flush=True))
    for image in images.values():
        how = f"built in {image.seconds:.0f} s" if image.built else "unchanged"
        print(f"  {image.target:<11} {image.tag:<40} {how:<16} {image.size_bytes / 1e6:6.0f} MB")
    print(f"{len(images)} images ready in {time.perf_counter() - started:.0f} s "
          f"(each also tagged {next(iter(images.values())).version_tag.rsplit(':', 1)[1]})")
    return 0
