"""The local Prometheus' configuration, generated from the running services.

Targets carry the same ``app`` and ``shard`` labels as the Kubernetes pods, so
recording rules and verdict queries are identical on every backend.
"""

from __future__ import annotations

from pathlib import Path

import yaml

SCRAPE_INTERVAL = "5s"
EVALUATION_INTERVAL = "5s"
RULES_FILE = Path(__file__).resolve().parents[3] / "prometheus" / "recording-rules.yaml"


def render_config(targets: list[tuple[str, str, dict[str, str]]], rules_file: Path = RULES_FILE) -> str:
    """``targets``: (job, host:port, labels) per scraped service."""
    jobs: dict[str, list[dict]] = {}
    for job, address, labels in targets:
        jobs.setdefault(job, []).append({"targets": [address], "labels": dict(labels)})
    config = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": EVALUATION_INTERVAL},
        "rule_files": [str(rules_file)],
        "scrape_configs": [
            {"job_name": job, "scrape_interval": SCRAPE_INTERVAL, "static_configs": groups}
            for job, groups in jobs.items()
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)
