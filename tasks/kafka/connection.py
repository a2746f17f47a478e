"""Our Kafka connection: a Prefect block, the client configs built from it, and topic checks.

There is no published prefect-kafka collection, so this block is the project's own. Every
librdkafka setting the pipeline uses is built in one place (``_base_config``) so producer,
consumer and admin clients always agree on where the broker is and how to authenticate.

The configs returned by ``producer_config`` / ``consumer_config`` / ``admin_config`` hold the
password in clear text (librdkafka needs it): pass them to a client, never log them.
Everything that talks to a broker takes a timeout, so an unreachable broker is an error in
bounded time, not a hang.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic
from prefect import task
from prefect.blocks.core import Block
from prefect.cache_policies import NO_CACHE
from pydantic import Field, SecretStr

from tasks.errors import PipelineError
from tasks.settings import Settings

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]

# librdkafka's own log lines go to Python logging instead of stderr (see ``client_extras``).
LIBRDKAFKA_LOGGER = logging.getLogger("tasks.kafka.connection.librdkafka")

MESSAGE_TIMEOUT_MS = 60_000
REACHABLE_TIMEOUT_S = 8.0  # a message not acknowledged within this fails with a delivery error


class KafkaConnection(Block):
    """Where a Kafka cluster is and how to authenticate to it.

    Example:
        Save a Confluent Cloud connection once, then load it by name in flows:
        ```python
        from pydantic import SecretStr
        from tasks.kafka.connection import KafkaConnection

        KafkaConnection(
            bootstrap_servers="pkc-xxxxx.eu-west-1.aws.confluent.cloud:9092",
            security_protocol="SASL_SSL",
            sasl_mechanism="PLAIN",
            username=SecretStr("API_KEY"),
            password=SecretStr("API_SECRET"),
        ).save("confluent-cloud")

        connection = KafkaConnection.load("confluent-cloud")
        producer = confluent_kafka.Producer(connection.producer_config())
        ```
    """

    _block_type_name = "Kafka Connection"
    _description = "Bootstrap servers and credentials of a Kafka cluster (local, self-hosted or Confluent Cloud)."

    bootstrap_servers: str = Field(..., description="HOST:PORT[,HOST:PORT...] of the brokers.")
    security_protocol: SecurityProtocol = Field("PLAINTEXT", description="How clients talk to the brokers.")
    sasl_mechanism: str | None = Field(None, description="SASL mechanism, e.g. PLAIN (Confluent Cloud) or SCRAM-SHA-512.")
    username: SecretStr | None = Field(None, description="SASL user name; for Confluent Cloud the API key.")
    password: SecretStr | None = Field(None, description="SASL password; for Confluent Cloud the API secret.")
    client_id: str = Field("logistics-pipeline", description="Client id the brokers see in their logs and quotas.")
    extra: dict[str, str] = Field(
        default_factory=dict, description="Further librdkafka settings, applied last (shown in clear: no secrets here)."
    )

    def _base_config(self) -> dict[str, Any]:
        """Settings every client shares: where the brokers are and how to authenticate."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
            "client.id": self.client_id,
        }
        if self.sasl_mechanism:
            config["sasl.mechanism"] = self.sasl_mechanism
        if self.username is not None:
            config["sasl.username"] = self.username.get_secret_value()
        if self.password is not None:
            config["sasl.password"] = self.password.get_secret_value()
        return config

    def _with_extra(self, config: dict[str, Any]) -> dict[str, Any]:
        return {**self._base_config(), **config, **self.extra}

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
        """A consumer that commits nothing itself (offsets live with the data) and sees the end."""
        return self._with_extra(
            {
                "group.id": group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": True,
            }
        )

    def admin_config(self) -> dict[str, Any]:
        return self._with_extra({})


def client_extras() -> dict[str, Any]:
    """Non-string client settings: librdkafka logs through Python logging, not raw stderr."""
    return {"logger": LIBRDKAFKA_LOGGER}


def kafka_connection_from_settings(settings: Settings) -> KafkaConnection | None:
    """The connection the LOGISTICS_KAFKA_* settings describe; None when no broker is configured."""
    if not settings.kafka_bootstrap_servers:
        return None
    username = settings.kafka_username
    if isinstance(username, str):
        username = SecretStr(username)
    return KafkaConnection(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        security_protocol=settings.kafka_security_protocol,
        sasl_mechanism=settings.kafka_sasl_mechanism,
        username=username,
        password=settings.kafka_password,
    )


def load_kafka_connection(block_name: str | None, settings: Settings) -> KafkaConnection | None:
    """A saved ``Kafka Connection`` block by name when given, else the one from settings (or None)."""
    if not block_name:
        return kafka_connection_from_settings(settings)
    try:
        return KafkaConnection.load(block_name)
    except ValueError as error:  # Prefect's "block document not found"
        raise PipelineError(f"no Kafka Connection block named {block_name!r}: {error}") from None


def _admin(connection: KafkaConnection) -> AdminClient:
    return AdminClient({**connection.admin_config(), **client_extras()})


def check_reachable(connection: KafkaConnection, timeout_s: float = 8.0) -> int:
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


@task(retries=2, retry_delay_seconds=[2, 5], cache_policy=NO_CACHE)
def check_broker(connection: KafkaConnection) -> int:
    """The broker answers (retried with backoff: it may be starting); returns the number of brokers."""
    return check_reachable(connection, REACHABLE_TIMEOUT_S)


def ensure_topic(
    connection: KafkaConnection, topic: str, partitions: int = 3, timeout: float = 30.0, replication_factor: int = 1
) -> bool:
    """Create ``topic`` when absent; returns True when it was created. An existing topic is kept as is."""
    admin = _admin(connection)
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
