"""The cluster's fixed facts: namespaces, the ports mapped to the host, and each workload's resources.

A leaf of the Kubernetes package: the manifests and the Helm values both read it, so neither imports the
other for a name.
"""

from __future__ import annotations

from matchlab import topology

APP_NAMESPACE = "matching-engine"
MONITORING_NAMESPACE = "monitoring"
KAFKA_EXTERNAL_PORT = 19092
RELAY_PORT_NAME = "relay-metrics"  # the relay's scrape job finds the shards' relay containers by this port name

# NodePorts, mapped by the k3d load balancer to host ports (design §2: 8080, 3000). Prometheus
# (9090 in the design) has none: its remote-write receiver must not be reachable from outside the cluster.
# The application's host ports follow matchlab.topology (gateway 8080, shard i 8081 + i, its metrics
# 9191 + i); their NodePorts follow the same pattern from 30080, 30081 and 30191.
HOST_PORTS = {
    "edge-gateway": topology.GATEWAY_HOST_PORT,
    **{f"me-shard-{s}": topology.shard_host_port(s) for s in topology.SHARD_IDS},
    **{f"me-shard-{s}-metrics": topology.shard_metrics_host_port(s) for s in topology.SHARD_IDS},
    "redpanda-external": KAFKA_EXTERNAL_PORT,
    "grafana": 3000,
}
NODE_PORTS = {
    "edge-gateway": 30080,
    **{f"me-shard-{s}": 30081 + topology.shard_index(s) for s in topology.SHARD_IDS},
    **{f"me-shard-{s}-metrics": 30191 + topology.shard_index(s) for s in topology.SHARD_IDS},
    "redpanda-external": 30092,
    "grafana": 30300,
}


def cpu_quantity(cpus: float) -> str:
    """A Kubernetes CPU quantity: whole cores as "2", fractions in millicores ("500m")."""
    return str(int(cpus)) if float(cpus).is_integer() else f"{round(cpus * 1000)}m"


def resources(role: str) -> dict:
    """Requests and limits from matchlab.topology's CPU and memory budgets (the unscaled numbers)."""
    cpu, memory = topology.CPU_BUDGETS[role], topology.MEMORY_BUDGETS[role]
    return {"requests": {"cpu": cpu_quantity(cpu.request), "memory": memory.request},
            "limits": {"cpu": cpu_quantity(cpu.limit), "memory": memory.limit}}
