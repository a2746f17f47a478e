"""produce-messages end to end: into a real broker, against an unreachable one, and into the landing folder."""

from __future__ import annotations

import json
import re
import socket
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError
from confluent_kafka.admin import AdminClient
from prefect.exceptions import ParameterTypeError
from pydantic import SecretStr

from logistics_pipeline.flows.produce import produce_messages
from logistics_pipeline.tasks.errors import PipelineError
from logistics_pipeline.tasks.kafka.client import KafkaClientConfig, client_extras
from logistics_pipeline.tasks.kafka.connection import KafkaConnection

pytestmark = pytest.mark.usefixtures("prefect_server")

KAFKA_ENV = ("KAFKA_BOOTSTRAP_SERVERS", "LOGISTICS_KAFKA_BOOTSTRAP_SERVERS", "LOGISTICS_KAFKA_SECURITY_PROTOCOL",
             "LOGISTICS_KAFKA_SASL_MECHANISM", "LOGISTICS_KAFKA_USERNAME", "LOGISTICS_KAFKA_PASSWORD")


@pytest.fixture(autouse=True)
def no_kafka_env(monkeypatch):
    """Tests say where Kafka is through parameters; the environment must not decide for them."""
    for name in KAFKA_ENV:
        monkeypatch.delenv(name, raising=False)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def consume_all(bootstrap: str, topic: str, partitions: int, timeout_s: float = 60.0) -> list:
    """Every message in the topic, read until the end of each partition."""
    consumer = Consumer(
        {**KafkaClientConfig(bootstrap_servers=bootstrap).consumer_config(f"test-{uuid.uuid4().hex[:8]}"), **client_extras()}
    )
    consumer.subscribe([topic])
    messages, at_end = [], set()
    deadline = time.monotonic() + timeout_s
    try:
        while len(at_end) < partitions and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition())
                    continue
                raise AssertionError(message.error().str())
            at_end.discard(message.partition())
            messages.append(message)
    finally:
        consumer.close()
    assert len(at_end) == partitions, "did not reach the end of every partition in time"
    return messages


def admin_client(bootstrap: str) -> AdminClient:
    return AdminClient({**KafkaClientConfig(bootstrap_servers=bootstrap).admin_config(), **client_extras()})


def parse_or_none(value: bytes) -> dict | None:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return None


@pytest.mark.kafka
def test_produce_to_kafka_and_read_everything_back(kafka_bootstrap, kafka_topic, tmp_path):
    count, bad_fraction = 3000, 0.1
    summary = produce_messages(
        count=count, seed=11, bad_fraction=bad_fraction, topic=kafka_topic, partitions=3,
        bootstrap_servers=kafka_bootstrap, lake=str(tmp_path / "lake"),
    )
    assert summary["transport"] == "kafka" and summary["topic"] == kafka_topic
    assert summary["messages"] == summary["delivered"] == count
    assert summary["bad_messages"] == round(count * bad_fraction)
    assert summary["order_lines"] >= count

    metadata = admin_client(kafka_bootstrap).list_topics(timeout=10)
    assert len(metadata.topics[kafka_topic].partitions) == 3

    messages = consume_all(kafka_bootstrap, kafka_topic, partitions=3)
    assert len(messages) == count
    keys = [message.key().decode() for message in messages]
    assert sorted(keys) == [f"ST{11:06d}{i:010d}" for i in range(count)]  # each order exactly once
    parsed = [parse_or_none(message.value()) for message in messages]
    malformed = sum(order is None for order in parsed)
    assert malformed == round(count * bad_fraction) // 5  # only the deliberately malformed ones
    for key, order in zip(keys, parsed, strict=True):
        if order is not None:
            assert order["order_number"] == key
    lines = sum(len(order["lines"]) for order in parsed if order is not None)
    assert lines + malformed == summary["order_lines"]


@pytest.mark.kafka
def test_saved_block_is_used_by_name(kafka_bootstrap, kafka_topic, tmp_path):
    name = f"test-{uuid.uuid4().hex[:8]}"
    KafkaConnection(bootstrap_servers=kafka_bootstrap, client_id="block-test").save(name)
    summary = produce_messages(count=200, seed=12, topic=kafka_topic, kafka_block=name, lake=str(tmp_path / "lake"))
    assert summary["delivered"] == 200 and summary["bootstrap_servers"] == kafka_bootstrap
    assert len(consume_all(kafka_bootstrap, kafka_topic, partitions=3)) == 200


def test_unknown_block_is_a_clear_error(tmp_path):
    with pytest.raises(PipelineError, match="no-such-block"):
        produce_messages(count=1, kafka_block="no-such-block", lake=str(tmp_path / "lake"))


@pytest.mark.kafka
def test_unreachable_broker_fails_in_bounded_time_without_leaking_secrets(tmp_path):
    """The reachability check is retried (the broker may be starting) but gives up in bounded time."""
    from prefect import get_client

    secret = f"s3cret-{uuid.uuid4().hex}"
    bootstrap = f"127.0.0.1:{closed_port()}"
    name = f"test-unreachable-{uuid.uuid4().hex[:8]}"
    KafkaConnection(
        bootstrap_servers=bootstrap, security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
        username=SecretStr("key"), password=SecretStr(secret),
    ).save(name)
    started = time.monotonic()
    state = produce_messages(count=10, kafka_block=name, lake=str(tmp_path / "lake"), return_state=True)
    elapsed = time.monotonic() - started
    assert state.is_failed()
    with pytest.raises(PipelineError) as raised:
        state.result()
    assert elapsed < 60
    assert bootstrap in str(raised.value)

    with get_client(sync_client=True) as client:
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterId,
            LogFilter,
            LogFilterFlowRunId,
        )

        flow_run_id = state.state_details.flow_run_id
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        artifacts = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    shown = " ".join(log.message for log in logs) + str(raised.value) + " ".join(str(a.data) for a in artifacts)
    assert bootstrap in shown
    assert secret not in shown


def test_landing_folder_without_kafka(tmp_path):
    lake = tmp_path / "lake"
    first = produce_messages(count=500, seed=3, bad_fraction=0.2, lake=str(lake))
    second = produce_messages(count=40, seed=4, lake=str(lake))
    folder = lake / "landing" / "orders"
    assert first["transport"] == "landing" and first["delivered"] == 500 and second["delivered"] == 40
    files = sorted(folder.iterdir())
    assert [f.name for f in files] == [Path(first["path"]).name, Path(second["path"]).name]  # sorted by creation
    assert all(re.fullmatch(r"orders-\d{8}T\d{12}Z-\d{6}-[0-9a-f]{8}\.jsonl", f.name) for f in files)  # no temp files left

    lines = Path(first["path"]).read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) - 1 == 500  # one message per line, newline-terminated
    parsed = [parse_or_none(line) for line in lines[:-1]]
    assert sum(order is None for order in parsed) == 100 // 5
    numbers = [order["order_number"] for order in parsed if order is not None]
    assert len(set(numbers)) == len(numbers) and all(n.startswith("ST000003") for n in numbers)
    assert first["bad_messages"] == 100


def test_rate_throttles_production(tmp_path):
    summary = produce_messages(count=60, rate=100.0, lake=str(tmp_path / "lake"))
    assert summary["seconds"] >= 0.5 and summary["delivered"] == 60


def test_zero_messages_leave_no_file(tmp_path):
    summary = produce_messages(count=0, lake=str(tmp_path / "lake"))
    assert summary["delivered"] == 0
    assert not any((tmp_path / "lake" / "landing" / "orders").iterdir())


@pytest.mark.parametrize(
    "parameters",
    [{"count": -1}, {"bad_fraction": 1.5}, {"bad_fraction": -0.1}, {"rate": 0.0}, {"partitions": 0}, {"seed": -3}],
)
def test_invalid_parameters_fail_before_any_work(tmp_path, parameters):
    lake = tmp_path / "lake"
    with pytest.raises(ParameterTypeError):
        produce_messages(lake=str(lake), **parameters)
    assert not lake.exists()


@pytest.mark.kafka
def test_undelivered_messages_fail_the_run_with_counts(kafka_bootstrap, kafka_topic, tmp_path):
    """The brokers refuse every batch (the topic takes 100-byte records at most): the run must fail."""
    from confluent_kafka.admin import NewTopic

    admin = admin_client(kafka_bootstrap)
    created = admin.create_topics([NewTopic(kafka_topic, 1, 1, config={"max.message.bytes": "100"})], operation_timeout=30)
    created[kafka_topic].result(timeout=30)
    started = time.monotonic()
    with pytest.raises(PipelineError) as raised:
        produce_messages(count=300, topic=kafka_topic, bootstrap_servers=kafka_bootstrap, lake=str(tmp_path / "lake"))
    assert time.monotonic() - started < 90
    message = str(raised.value)
    assert re.search(r"\b300 of 300 messages were not delivered\b", message), message
    assert kafka_bootstrap in message and "first error:" in message


@pytest.mark.kafka
def test_broker_crash_mid_run_loses_and_duplicates_nothing(kafka_broker, kafka_topic, tmp_path):
    """The idempotent producer rides out a broker crash and restart: every order arrives exactly once."""
    import threading

    from confluent_kafka import TopicPartition

    if not hasattr(kafka_broker, "restart"):
        pytest.skip("the session's broker is external; it cannot be restarted here")
    count, rate = 8000, 800.0
    bounced: list[object] = []

    def stored() -> int:
        consumer = Consumer({**KafkaClientConfig(bootstrap_servers=kafka_broker.bootstrap).consumer_config("watch"), **client_extras()})
        try:
            return sum(consumer.get_watermark_offsets(TopicPartition(kafka_topic, p), timeout=2)[1] for p in range(3))
        except Exception:  # noqa: BLE001 - the topic is not there yet
            return 0
        finally:
            consumer.close()

    def crash_when_half_way() -> None:
        try:
            deadline = time.monotonic() + 60
            while stored() < 1000 and time.monotonic() < deadline:
                time.sleep(0.2)
            kafka_broker.restart(kill=True, timeout=120)
            bounced.append("restarted")
        except BaseException as error:  # noqa: BLE001 - reported by the test below
            bounced.append(error)

    crasher = threading.Thread(target=crash_when_half_way)
    crasher.start()
    try:
        summary = produce_messages(
            count=count, seed=13, rate=rate, topic=kafka_topic, bootstrap_servers=kafka_broker.bootstrap, lake=str(tmp_path / "lake")
        )
    finally:
        crasher.join(180)
    assert bounced == ["restarted"]
    assert summary["delivered"] == count
    keys = sorted(message.key().decode() for message in consume_all(kafka_broker.bootstrap, kafka_topic, partitions=3))
    assert keys == [f"ST{13:06d}{i:010d}" for i in range(count)]
