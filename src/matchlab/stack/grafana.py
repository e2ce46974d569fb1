"""Grafana for the local stack, only where a Grafana binary is installed.

Provisioned from the repository's one dashboard file with a Prometheus
datasource whose uid the dashboard references. Listens on 127.0.0.1 with a
per-run admin password (never a literal in the repository).
"""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import yaml

from matchlab.stack.probes import HttpProbe
from matchlab.stack.process import ManagedProcess, ProcessService

DASHBOARDS_DIR = Path(__file__).resolve().parents[3] / "grafana" / "dashboards"
DATASOURCE_UID = "prometheus"
READY_TIMEOUT_S = 60.0
BINARIES = ("grafana", "grafana-server")


def find_grafana() -> tuple[str, list[str]] | None:
    """The binary and its leading arguments, or None when Grafana is absent."""
    for name in BINARIES:
        path = shutil.which(name)
        if path:
            return path, (["server"] if name == "grafana" else [])
    return None


def write_provisioning(root: Path, prometheus_url: str) -> Path:
    prov = root / "provisioning"
    (prov / "datasources").mkdir(parents=True, exist_ok=True)
    (prov / "dashboards").mkdir(parents=True, exist_ok=True)
    (prov / "plugins").mkdir(parents=True, exist_ok=True)
    (prov / "alerting").mkdir(parents=True, exist_ok=True)
    datasource = {
        "apiVersion": 1,
        "datasources": [
            {"name": "Prometheus", "uid": DATASOURCE_UID, "type": "prometheus", "access": "proxy",
             "url": prometheus_url, "isDefault": True, "jsonData": {"timeInterval": "5s"}}
        ],
    }
    (prov / "datasources" / "prometheus.yaml").write_text(yaml.safe_dump(datasource))
    provider = {
        "apiVersion": 1,
        "providers": [
            {"name": "matching-engine", "type": "file", "options": {"path": str(DASHBOARDS_DIR)}, "allowUiUpdates": False}
        ],
    }
    (prov / "dashboards" / "matching-engine.yaml").write_text(yaml.safe_dump(provider))
    return prov


class GrafanaServer(ProcessService):
    ready_timeout_s = READY_TIMEOUT_S

    def __init__(self, binary: tuple[str, list[str]], port: int, workdir: Path, prometheus_url: str) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.admin_password = secrets.token_urlsafe(16)
        path, lead = binary
        prov = write_provisioning(workdir, prometheus_url)
        homepath = Path(path).resolve().parents[1] / "share" / "grafana"
        argv = [path, *lead]
        if homepath.exists():
            argv.append(f"--homepath={homepath}")
        self.process = ManagedProcess(
            "grafana",
            argv,
            workdir / "grafana.log",
            env={
                "GF_SERVER_HTTP_ADDR": "127.0.0.1",
                "GF_SERVER_HTTP_PORT": str(port),
                "GF_PATHS_DATA": str(workdir / "data"),
                "GF_PATHS_LOGS": str(workdir / "logs"),
                "GF_PATHS_PROVISIONING": str(prov),
                "GF_SECURITY_ADMIN_PASSWORD": self.admin_password,
                "GF_ANALYTICS_REPORTING_ENABLED": "false",
                "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
            },
        )

    def probe(self) -> HttpProbe:
        return HttpProbe(f"{self.url}/api/health")
