"""The Kafka Connection block: client configs from one base, secrets never shown, bounded checks."""

from __future__ import annotations

import socket

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr

from logistics_pipeline.tasks.kafka.client import client_extras
from logistics_pipeline.tasks.kafka.connection import (
    KafkaConnection,
    kafka_connection_from_settings,
    load_kafka_connection,
)
from logistics_pipeline.tasks.settings import Settings

SECRET = "cflt-secret-Zq9xV2"
API_KEY = "ABCDEFGH12345678"


@pytest.fixture
def local() -> KafkaConnection:
    return KafkaConnection(bootstrap_servers="localhost:9092")


def cloud_connection() -> KafkaConnection:
    """A Confluent Cloud-like connection with a secret to leak."""
    return KafkaConnection(
        bootstrap_servers="pkc-abc12.eu-west-1.aws.confluent.cloud:9092",
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        username=SecretStr(API_KEY),
        password=SecretStr(SECRET),
    )


@pytest.fixture
def cloud() -> KafkaConnection:
    return cloud_connection()


@pytest.fixture
def no_kafka_env(monkeypatch):
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "LOGISTICS_KAFKA_BOOTSTRAP_SERVERS", "LOGISTICS_KAFKA_SECURITY_PROTOCOL",
                 "LOGISTICS_KAFKA_SASL_MECHANISM", "LOGISTICS_KAFKA_USERNAME", "LOGISTICS_KAFKA_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_local_plaintext_configs(local):
    producer = local.producer_config()
    assert producer["bootstrap.servers"] == "localhost:9092"
    assert producer["security.protocol"] == "PLAINTEXT"
    assert producer["client.id"] == "logistics-pipeline"
    assert not any(key.startswith("sasl.") for key in producer)
    assert producer["enable.idempotence"] is True and producer["acks"] == "all"
    assert 0 < producer["queue.buffering.max.messages"] <= 1_000_000  # bounded, explicitly
    assert 0 < producer["queue.buffering.max.kbytes"] <= 1_048_576
    assert 20 <= producer["linger.ms"] <= 50
    assert producer["compression.type"] in {"lz4", "zstd"}
    assert producer["message.timeout.ms"] <= 60_000

    consumer = local.consumer_config("bronze")
    assert consumer["group.id"] == "bronze"
    assert consumer["enable.auto.commit"] is False
    assert consumer["auto.offset.reset"] == "earliest"
    assert consumer["enable.partition.eof"] is True
    assert 0 < consumer["fetch.queue.backoff.ms"] <= 100  # librdkafka's default (1 s) stalls a reader that drains its queue fast
    assert "enable.idempotence" not in consumer

    assert local.admin_config() == {"bootstrap.servers": "localhost:9092", "security.protocol": "PLAINTEXT", "client.id": "logistics-pipeline"}


def test_confluent_cloud_credentials_reach_every_client(cloud):
    for config in (cloud.producer_config(), cloud.consumer_config("g"), cloud.admin_config()):
        assert config["security.protocol"] == "SASL_SSL"
        assert config["sasl.mechanism"] == "PLAIN"
        assert config["sasl.username"] == API_KEY
        assert config["sasl.password"] == SECRET


def test_extra_settings_apply_last_everywhere(local):
    tuned = local.model_copy(update={"extra": {"linger.ms": "5", "client.id": "mine", "socket.keepalive.enable": "true"}})
    for config in (tuned.producer_config(), tuned.consumer_config("g"), tuned.admin_config()):
        assert config["client.id"] == "mine"
        assert config["socket.keepalive.enable"] == "true"
    assert tuned.producer_config()["linger.ms"] == "5"


def test_librdkafka_accepts_the_configs(cloud, local):
    """Every key and value is one this librdkafka knows (lz4 compiled in, SASL/SSL available)."""
    for connection in (local, cloud):
        Producer({**connection.producer_config(), **client_extras()})
        Consumer({**connection.consumer_config("g"), **client_extras()}).close()
        AdminClient({**connection.admin_config(), **client_extras()})


def test_secrets_never_shown(cloud):
    shown = [repr(cloud), str(cloud), f"{cloud}", cloud.model_dump_json(), repr(cloud.model_dump())]
    for text in shown:
        assert SECRET not in text and API_KEY not in text


def test_connection_from_settings(no_kafka_env, monkeypatch):
    assert kafka_connection_from_settings(Settings()) is None
    assert load_kafka_connection(None, Settings()) is None

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker-1:9092,broker-2:9092")
    monkeypatch.setenv("LOGISTICS_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("LOGISTICS_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("LOGISTICS_KAFKA_USERNAME", "pipeline")
    monkeypatch.setenv("LOGISTICS_KAFKA_PASSWORD", SECRET)
    connection = load_kafka_connection(None, Settings())
    assert connection is not None
    assert connection.bootstrap_servers == "broker-1:9092,broker-2:9092"
    config = connection.producer_config()
    assert (config["security.protocol"], config["sasl.mechanism"]) == ("SASL_SSL", "SCRAM-SHA-512")
    assert (config["sasl.username"], config["sasl.password"]) == ("pipeline", SECRET)
    assert SECRET not in repr(connection)


def test_block_metadata():
    assert KafkaConnection.get_block_type_name() == "Kafka Connection"
    assert KafkaConnection.get_block_type_slug() == "kafka-connection"
    assert KafkaConnection.get_description()
    assert "KafkaConnection(" in (KafkaConnection.__doc__ or "")  # the docs-style example
