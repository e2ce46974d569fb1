"""``python -m matchlab.docs_reference [--check]``: write the generated reference pages into docs/.

Exit codes: 0 written (or, with ``--check``, current); 1 with ``--check`` when a
page is stale (each named on stderr).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from matchlab.docs_reference import DOCS_DIR, stale_pages, write_pages


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m matchlab.docs_reference", description=__doc__.split("\n\n")[0])
    p.add_argument("--docs-dir", type=Path, default=DOCS_DIR, help="the site's docs folder (default: the repository's)")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if a page differs from the code")
    args = p.parse_args(argv)
    if args.check:
        stale = stale_pages(args.docs_dir)
        for path in stale:
            print(f"stale: docs/{path} (run python -m matchlab.docs_reference)", file=sys.stderr)
        return 1 if stale else 0
    for path in write_pages(args.docs_dir):
        print(f"wrote docs/{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
