"""``python -m matchlab.relay``: run the event relay of one shard (beside it, on its journal)."""

from __future__ import annotations

import sys

from matchlab.relay.config import RelayConfig
from matchlab.relay.service import serve
from matchlab.service import run_service


def main() -> int:
    return run_service("me-relay", RelayConfig.from_env, serve)


if __name__ == "__main__":
    sys.exit(main())
