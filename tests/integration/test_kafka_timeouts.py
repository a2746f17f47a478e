"""Kafka clients against a closed port: errors in bounded time, naming the servers, showing no secret."""

from __future__ import annotations

import logging
import time

import pytest

from logistics_pipeline.tasks.errors import PipelineError
from logistics_pipeline.tasks.kafka.client import check_reachable
from logistics_pipeline.tasks.kafka.connection import KafkaConnection
from tests.unit.test_kafka_block import API_KEY, SECRET, closed_port, cloud_connection


def test_unreachable_broker_fails_in_bounded_time_naming_it(caplog):
    port = closed_port()
    connection = cloud_connection().model_copy(update={"bootstrap_servers": f"127.0.0.1:{port}"})
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG), pytest.raises(PipelineError) as raised:
        check_reachable(connection.client(), timeout_s=1.5)
    assert time.monotonic() - started < 10
    message = str(raised.value)
    assert f"127.0.0.1:{port}" in message
    assert SECRET not in message and API_KEY not in message
    assert SECRET not in caplog.text and API_KEY not in caplog.text
    assert "\n" not in message  # one line, for the CLI


def test_producer_reports_undelivered_messages_in_bounded_time():
    """Nobody listens: every message times out, and the sink says so instead of waiting forever."""
    from logistics_pipeline.flows.produce import KafkaSink

    connection = KafkaConnection(bootstrap_servers=f"127.0.0.1:{closed_port()}", extra={"message.timeout.ms": "1000"})
    sink = KafkaSink(connection, "orders")
    started = time.monotonic()
    assert sink.send([b"k1", b"k2"], [b"{}", b"{}"]) is True  # queued locally
    while sink.send([b"k"], [b"{}"]) and time.monotonic() - started < 20:
        time.sleep(0.2)
    assert sink.send([b"k"], [b"{}"]) is False  # stops at the first failure
    assert sink.finish() == 0
    assert "timed out" in (sink.first_error or "").lower()
    assert time.monotonic() - started < 20
