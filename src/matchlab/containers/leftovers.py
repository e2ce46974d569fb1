"""``python -m matchlab.containers.leftovers``: is anything a run created still on the Docker engine?

Lists every container, network and volume bearing the runs' label (``matchlab.run``) and exits 1 when there
is one, so CI fails on a teardown that forgot something. A stack ``matchlab up`` left running on purpose
counts too: ``matchlab down`` first. A missing engine is one line and exit 3, as for the CLI.
"""

from __future__ import annotations

import sys

from matchlab.containers.ledger import RUN_LABEL
from matchlab.errors import PrerequisiteError
from matchlab.images.engine import engine_client

EXIT_PREREQUISITE = 3


def leftovers(client) -> list[str]:
    flt = {"label": RUN_LABEL}
    return ([f"container {c.name}" for c in client.containers.list(all=True, filters=flt)]
            + [f"network {n.name}" for n in client.networks.list(filters=flt)]
            + [f"volume {v.name}" for v in client.volumes.list(filters=flt)])


def main() -> int:
    try:
        client = engine_client()
    except PrerequisiteError as exc:
        print(f"leftovers: {exc}", file=sys.stderr)
        return EXIT_PREREQUISITE
    found = leftovers(client)
    for line in found:
        print(f"left on the Docker engine: {line} (label {RUN_LABEL})")
    if not found:
        print("nothing of any run is left on the Docker engine")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
