"""``python -m matchlab.gateway``: run the edge gateway."""

from __future__ import annotations

import sys

from matchlab.gateway.config import GatewayConfig
from matchlab.gateway.server import serve
from matchlab.service import run_service


def main() -> int:
    return run_service("edge-gateway", GatewayConfig.from_env, serve)


if __name__ == "__main__":
    sys.exit(main())
