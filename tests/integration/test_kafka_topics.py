"""The ingest reads only a topic that exists and is not one of Kafka's own, on the real broker:
a typo in the topic's name used to read as an empty stream (exit 0), and ``__consumer_offsets``
was ingested as orders. Producing still creates the topic it writes to."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient

from logistics_pipeline.tasks.errors import PipelineError
from logistics_pipeline.tasks.kafka.client import KafkaClientConfig, ensure_topic
from logistics_pipeline.tasks.local.stream import KafkaReader
from tests.cli_runner import run_cli

pytestmark = pytest.mark.usefixtures("prefect_server")


def topics(bootstrap: str) -> set[str]:
    return set(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=15).topics)


def test_run_refuses_a_topic_that_does_not_exist_in_one_line(kafka_bootstrap, kafka_topic, tmp_path, sources):
    result = run_cli(
        "run", "--orders", "0", "--bootstrap-servers", kafka_bootstrap, "--source-dir", str(sources), "--lake", str(tmp_path / "lake"),
        env={"LOGISTICS_KAFKA_TOPIC": kafka_topic},
    )
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: topic '{kafka_topic}' does not exist on Kafka at {kafka_bootstrap} (topics: "), last
    assert last.endswith("check its name (LOGISTICS_KAFKA_TOPIC), or produce orders to it first"), last
    assert "Traceback" not in result.stderr
    assert kafka_topic not in topics(kafka_bootstrap), "looking for the topic created it"


def test_the_ingest_refuses_kafkas_own_topics(kafka_bootstrap, tmp_path):
    config = {"bootstrap.servers": kafka_bootstrap, "group.id": "refusal", "enable.partition.eof": True}
    with pytest.raises(PipelineError, match=r"^topic '__consumer_offsets' is one of Kafka's own \(its name starts with '__'\), not a stream of orders"):
        KafkaReader.open(config, "__consumer_offsets", str(tmp_path / "kafka_orders"), kafka_bootstrap)
    assert not (tmp_path / "kafka_orders").exists()


def test_producing_creates_a_new_topic_but_never_one_of_kafkas_own(kafka_bootstrap, kafka_topic):
    connection = KafkaClientConfig(bootstrap_servers=kafka_bootstrap)
    assert ensure_topic(connection, kafka_topic, partitions=2) is True
    assert kafka_topic in topics(kafka_bootstrap)
    with pytest.raises(PipelineError, match="one of Kafka's own"):
        ensure_topic(connection, "__transaction_state")

