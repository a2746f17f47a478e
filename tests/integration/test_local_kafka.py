"""The local broker is a real Kafka: idempotent acks=all produce, consume back, survive restarts."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

pytestmark = pytest.mark.kafka

PARTITIONS = 3


def create_topic(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})  # keep a reference until the result is in
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1)], operation_timeout=30
    )
    futures[topic].result(timeout=30)


def produce(bootstrap: str, topic: str, values: list[str]) -> None:
    """Send every value and wait for every delivery report; any failed delivery fails the test."""
    errors = []
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5}
    )
    for value in values:
        producer.produce(
            topic,
            key=value.split(":")[0],
            value=value,
            on_delivery=lambda err, msg: errors.append(err) if err else None,
        )
        producer.poll(0)
    assert producer.flush(30) == 0, "messages still in flight after 30s"
    assert errors == []


def consume(bootstrap: str, topic: str, expected: int, timeout: float = 60) -> list[str]:
    """Read the topic from the beginning until `expected` messages arrived (or the timeout),
    then a little longer, so that duplicates beyond `expected` would show up too."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    values: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            batch = consumer.consume(num_messages=500, timeout=1)
            for msg in batch:
                if msg.error():
                    raise KafkaException(msg.error())
                values.append(msg.value().decode())
            if len(values) >= expected and not batch:
                break
    finally:
        consumer.close()
    return values


def messages(n: int, tag: str = "m") -> list[str]:
    return [f"{i}:{tag}-{i}" for i in range(n)]


def test_produce_and_consume_1000_messages(kafka_bootstrap, kafka_topic):
    create_topic(kafka_bootstrap, kafka_topic)
    sent = messages(1000)

    produce(kafka_bootstrap, kafka_topic, sent)
    received = consume(kafka_bootstrap, kafka_topic, expected=len(sent))

    assert len(received) == len(sent)  # nothing lost, nothing duplicated
    assert sorted(received) == sorted(sent)


@pytest.mark.parametrize("crash", [False, True], ids=["clean-stop", "sigkill"])
def test_messages_survive_a_broker_restart(kafka_broker, kafka_topic, crash):
    if not hasattr(kafka_broker, "restart"):
        pytest.skip("the broker comes from KAFKA_BOOTSTRAP_SERVERS; it cannot be restarted here")
    bootstrap = kafka_broker.bootstrap
    create_topic(bootstrap, kafka_topic)
    before = messages(500, "before")
    produce(bootstrap, kafka_topic, before)

    kafka_broker.stop(kill=crash)
    assert not kafka_broker.is_running()
    kafka_broker.start(timeout=120)  # same data dir and ports; storage is not reformatted

    after = messages(500, "after")
    produce(bootstrap, kafka_topic, after)
    received = consume(bootstrap, kafka_topic, expected=len(before) + len(after))
    assert sorted(received) == sorted(before + after)
