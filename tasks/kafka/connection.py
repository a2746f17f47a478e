"""Our Kafka connection as a Prefect block (there is no published prefect-kafka collection),
and where flows get one from: a saved block or the LOGISTICS_KAFKA_* settings."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.blocks.core import Block
from prefect.cache_policies import NO_CACHE
from pydantic import Field, SecretStr

from logistics_pipeline.tasks.errors import PipelineError
from logistics_pipeline.tasks.kafka.client import KafkaClientConfig, SecurityProtocol, check_reachable
from logistics_pipeline.tasks.settings import Settings

REACHABLE_TIMEOUT_S = 8.0


class KafkaConnection(Block):
    """Where a Kafka cluster is and how to authenticate to it.

    Example:
        Save a Confluent Cloud connection once, then load it by name in flows:
        ```python
        from pydantic import SecretStr
        from logistics_pipeline.tasks.kafka.connection import KafkaConnection

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

    def client(self) -> KafkaClientConfig:
        """The connection as plain client settings (secrets revealed: pass them to a client only)."""
        return KafkaClientConfig(
            bootstrap_servers=self.bootstrap_servers,
            security_protocol=self.security_protocol,
            sasl_mechanism=self.sasl_mechanism,
            username=None if self.username is None else self.username.get_secret_value(),
            password=None if self.password is None else self.password.get_secret_value(),
            client_id=self.client_id,
            extra=dict(self.extra),
        )

    def producer_config(self) -> dict[str, Any]:
        return self.client().producer_config()

    def consumer_config(self, group_id: str) -> dict[str, Any]:
        return self.client().consumer_config(group_id)

    def admin_config(self) -> dict[str, Any]:
        return self.client().admin_config()


def kafka_connection_from_settings(settings: Settings) -> KafkaConnection | None:
    """The connection the LOGISTICS_KAFKA_* settings describe; None when no broker is configured."""
    if not settings.kafka_bootstrap_servers:
        return None
    return KafkaConnection(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        security_protocol=settings.kafka_security_protocol,
        sasl_mechanism=settings.kafka_sasl_mechanism,
        username=settings.kafka_username,
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


@task(retries=2, retry_delay_seconds=[2, 5], cache_policy=NO_CACHE)
def check_broker(connection: KafkaConnection) -> int:
    """The broker answers (retried with backoff: it may be starting); returns the number of brokers."""
    return check_reachable(connection.client(), REACHABLE_TIMEOUT_S)
