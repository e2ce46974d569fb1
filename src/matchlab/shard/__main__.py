"""``python -m matchlab.shard``: run one matching-engine shard."""

from __future__ import annotations

import sys

from matchlab.service import run_service
from matchlab.shard.config import ShardConfig
from matchlab.shard.server import serve


def main() -> int:
    return run_service("me-shard", ShardConfig.from_env, serve)


if __name__ == "__main__":
    sys.exit(main())
