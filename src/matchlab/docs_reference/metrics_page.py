"""The services' metrics, read from the registries a shard and a gateway build, and the recording rules."""

from __future__ import annotations

from pathlib import Path

import yaml

from matchlab.docs_reference.markdown import cell, code, document, header, table

RULES_FILE = Path(__file__).resolve().parents[3] / "prometheus" / "recording-rules.yaml"
INSTANCE_LABELS = ("shard",)  # their values name the instance; other labels' values are listed
MAX_LISTED_BOUNDS = 16  # beyond this, a histogram's bounds are summarised


def _registries():
    """(service, registry) as each service builds it; constructing a server starts nothing."""
    from matchlab.gateway.config import GatewayConfig
    from matchlab.gateway.server import GatewayServer
    from matchlab.shard.config import ShardConfig
    from matchlab.shard.server import ShardServer

    return [("shard", ShardServer(ShardConfig.from_env({"KAFKA_BOOTSTRAP": ""})).metrics.registry),
            ("gateway", GatewayServer(GatewayConfig.from_env({})).metrics.registry)]


def _exposed_name(family) -> str:
    return f"{family.name}_total" if family.type == "counter" else family.name


def _labels(family, with_values: bool = True) -> str:
    values: dict[str, set[str]] = {}
    for sample in family.samples:
        for name, value in sample.labels.items():
            if name != "le":
                values.setdefault(name, set()).add(value)
    parts = []
    for name in sorted(values):
        listed = "" if name in INSTANCE_LABELS or not with_values else f" ({', '.join(sorted(values[name]))})"
        parts.append(f"`{name}`{listed}")
    return cell(", ".join(parts))


def _bounds(family) -> str:
    if family.type != "histogram":
        return ""
    first = next((s.labels for s in family.samples if s.name.endswith("_bucket")), None)
    bounds = sorted({float(s.labels["le"]) for s in family.samples
                     if s.name.endswith("_bucket") and s.labels["le"] != "+Inf"
                     and {k: v for k, v in s.labels.items() if k != "le"} == {k: v for k, v in first.items() if k != "le"}})
    text = [f"{b * 1000:.4f}".rstrip("0").rstrip(".") for b in bounds]  # in ms: shorter, and how latencies read
    if len(text) > MAX_LISTED_BOUNDS:
        return f"{len(text)} bounds from {text[0]} to {text[-1]}"
    return ", ".join(text)


def _own(name: str) -> bool:
    return name.startswith(("me_", "gw_"))


def recording_rules() -> list[list[str]]:
    doc = yaml.safe_load(RULES_FILE.read_text())
    return [[code(rule["record"]), code(" ".join(str(rule["expr"]).split()))]
            for group in doc["groups"] for rule in group["rules"] if "record" in rule]


def page() -> str:
    lines = header("Metrics", """
What each service exposes on its metrics port (`GET /metrics`, Prometheus text format), read from
the registries the services build. Histograms observe seconds; their bucket bounds are listed
below each table, in milliseconds. The load generator's own series (`loadgen_*`) reach Prometheus by remote write: see
[the load generator](load-generator.md#client-metrics).
""")
    runtime: dict[str, object] = {}
    for service, registry in _registries():
        families = list(registry.collect())
        lines += [f"## {service.capitalize()}", ""]
        own = [f for f in families if _own(f.name)]
        lines += table(["metric", "type", "labels", "what it counts"],
                       [[code(_exposed_name(f)), f.type, _labels(f), cell(f.documentation)] for f in own])
        lines += table(["histogram", "bucket upper bounds (ms)"],
                       [[code(f.name), _bounds(f)] for f in own if f.type == "histogram"])
        runtime.update({f.name: f for f in families if not _own(f.name)})
    lines += ["## The Python runtime's own", "", cell(
        "Both services also export the process and runtime collectors of `prometheus_client` (where the "
        "platform provides them): resident memory and CPU time are what the memory verdict and the "
        "capacity search's bottleneck attribution read."), ""]
    lines += table(["metric", "type", "labels", "what it counts"],
                   [[code(_exposed_name(f)), f.type, _labels(f, with_values=f.name != "python_info"), cell(f.documentation)]
                    for f in runtime.values()])
    lines += ["## Recording rules", "", cell(
        f"Evaluated every 5 s, from `prometheus/{RULES_FILE.name}` (the one source for every backend). Names "
        "follow `me:<metric>_<aggregation>:<window>`; the dashboard's panels use them where one exists."), ""]
    lines += table(["rule", "expression"], recording_rules())
    return document(lines)
