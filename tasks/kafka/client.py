"""Kafka clients without Prefect: the librdkafka configs, the broker and topic checks, and
librdkafka's errors in words. What the Spark job and the Prefect block both build on.

Every librdkafka setting the pipeline uses is built in one place (``KafkaClientConfig``), so
producer, consumer and admin clients always agree on where the broker is and how to
authenticate. The configs hold the password in clear text (librdkafka needs it): pass them
to a client, never log them. Everything that talks to a broker takes a timeout, so an
unreachable broker is an error in bounded time, not a hang.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic, TopicMetadata

from logistics_pipeline.tasks.errors import PipelineError

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]

# librdkafka's own log lines go to Python logging instead of stderr (see ``client_extras``).
LIBRDKAFKA_LOGGER = logging.getLogger("logistics_pipeline.tasks.kafka.librdkafka")

MESSAGE_TIMEOUT_MS = 60_000


@dataclass(frozen=True)
class KafkaClientConfig:
    """Where a Kafka cluster is and how to authenticate to it; the password is never shown (``repr``)."""

    bootstrap_servers: str
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: str | None = None
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    client_id: str = "logistics-pipeline"
    extra: dict[str, str] = field(default_factory=dict)

    def base_config(self) -> dict[str, Any]:
        """Settings every client shares: where the brokers are and how to authenticate."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
            "client.id": self.client_id,
        }
        if self.sasl_mechanism:
            config["sasl.mechanism"] = self.sasl_mechanism
        if self.username is not None:
            config["sasl.username"] = self.username
        if self.password is not None:
            config["sasl.password"] = self.password
        return config

    def _with_extra(self, config: dict[str, Any]) -> dict[str, Any]:
        return {**self.base_config(), **config, **self.extra}

    def producer_config(self) -> dict[str, Any]:
        """An idempotent, throughput-tuned producer whose failures surface in bounded time."""
        return self._with_extra(
            {
                "enable.idempotence": True,  # no duplicates or reordering on internal retries
                "acks": "all",
                "queue.buffering.max.messages": 200_000,  # bounded local queue: produce() raises BufferError
                "queue.buffering.max.kbytes": 131_072,  # ... or at 128 MiB, whichever comes first
                "linger.ms": 25,
                "batch.num.messages": 20_000,
                "batch.size": 1_000_000,  # below the brokers' default message.max.bytes (1 MiB)
                "compression.type": "lz4",
                "message.timeout.ms": MESSAGE_TIMEOUT_MS,
            }
        )

    def consumer_config(self, group_id: str) -> dict[str, Any]:
        """A consumer that commits nothing itself (offsets live with the data), sees the end,
        and keeps fetching while the ingest drains its queue."""
        return self._with_extra(
            {
                "group.id": group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": True,
                # librdkafka stops fetching a partition whose local queue holds queued.min.messages
                # and, by default, waits a whole second before it looks again: a reader draining
                # 100,000 messages in less than that waits for the broker most of the time. The
                # queue stays bounded by queued.max.messages.kbytes (64 MiB by default).
                "fetch.queue.backoff.ms": 10,
            }
        )

    def admin_config(self) -> dict[str, Any]:
        return self._with_extra({})


def client_extras() -> dict[str, Any]:
    """Non-string client settings: librdkafka logs through Python logging, not raw stderr."""
    return {"logger": LIBRDKAFKA_LOGGER}


def admin_client(connection: KafkaClientConfig) -> AdminClient:
    return AdminClient({**connection.admin_config(), **client_extras()})


def check_reachable(connection: KafkaClientConfig, timeout_s: float = 8.0) -> int:
    """Ask the cluster for its metadata; returns the number of brokers, or raises PipelineError."""
    errors: list[str] = []
    config = {**connection.admin_config(), **client_extras(), "error_cb": lambda err: errors.append(reason(err))}
    try:
        metadata = AdminClient(config).list_topics(timeout=timeout_s)
    except KafkaException as error:
        detail = errors[-1] if errors else reason(error)
        raise PipelineError(
            f"Kafka at {connection.bootstrap_servers} did not answer within {timeout_s:g}s ({detail}); "
            "is the broker running and are the bootstrap servers and credentials right?"
        ) from None
    return len(metadata.brokers)


def is_internal_topic(topic: str) -> bool:
    """One of Kafka's own topics (``__consumer_offsets``, ``__transaction_state``...): their
    names start with two underscores."""
    return topic.startswith("__")


def refuse_internal_topic(topic: str) -> None:
    if is_internal_topic(topic):
        raise PipelineError(
            f"topic {topic!r} is one of Kafka's own (its name starts with '__'), not a stream of orders: "
            "set the orders topic (LOGISTICS_KAFKA_TOPIC)"
        )


def existing_topic(topics: dict[str, TopicMetadata], topic: str, bootstrap_servers: str) -> TopicMetadata:
    """The metadata of a topic to read (``topics``: every topic's, from ``list_topics()``), or
    a PipelineError: a topic that does not exist would read as an empty stream, and a typo
    in its name would go unnoticed; Kafka's own topics are no orders."""
    refuse_internal_topic(topic)
    metadata = topics.get(topic)
    if metadata is None:
        known = sorted(name for name in topics if not is_internal_topic(name))
        raise PipelineError(
            f"topic {topic!r} does not exist on Kafka at {bootstrap_servers} (topics: {', '.join(known[:20]) or 'none'}): "
            "check its name (LOGISTICS_KAFKA_TOPIC), or produce orders to it first"
        )
    if metadata.error is not None:
        raise PipelineError(f"topic {topic!r} on Kafka at {bootstrap_servers} cannot be read: {reason(metadata.error)}")
    return metadata


def ensure_topic(
    connection: KafkaClientConfig, topic: str, partitions: int = 3, timeout: float = 30.0, replication_factor: int = 1
) -> bool:
    """Create ``topic`` when absent (producing is how a stream starts); returns True when it
    was created. An existing topic is kept as is; Kafka's own topics are refused."""
    refuse_internal_topic(topic)
    admin = admin_client(connection)
    try:
        # All topics, not just this one: asking for one topic's metadata may auto-create it.
        existing = admin.list_topics(timeout=timeout).topics.get(topic)
        if existing is not None and existing.error is None:
            return False
        futures = admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=replication_factor)],
            operation_timeout=timeout,
            request_timeout=timeout,
        )
        futures[topic].result(timeout=timeout)
        return True
    except KafkaException as error:
        kafka_error = error.args[0] if error.args else None
        if isinstance(kafka_error, KafkaError) and kafka_error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return False
        raise PipelineError(f"could not create topic {topic!r} on Kafka at {connection.bootstrap_servers}: {reason(error)}") from None
    except TimeoutError:
        raise PipelineError(f"creating topic {topic!r} on Kafka at {connection.bootstrap_servers} took over {timeout:g}s") from None


def reason(error: KafkaError | KafkaException) -> str:
    """librdkafka's human-readable reason, without the KafkaError{code=...} wrapping."""
    if isinstance(error, KafkaException) and error.args and isinstance(error.args[0], KafkaError):
        error = error.args[0]
    return error.str() if isinstance(error, KafkaError) else str(error)
