"""The Kafka reader on the real broker: it reads each partition from where the table says up to
the end seen when it opened, never past it even while messages keep arriving, with each
batch's end offsets matching its rows, and the messages' content as bronze keeps it."""

from __future__ import annotations

import polars as pl
from confluent_kafka import Producer

from logistics_pipeline.tasks.kafka.client import KafkaClientConfig, client_extras, ensure_topic
from logistics_pipeline.tasks.local.stream import KafkaReader, kafka_app_id, recorded_offset, write_batch


def produce(bootstrap: str, topic: str, messages: list[tuple[int, bytes | None, bytes | None]]) -> None:
    producer = Producer(KafkaClientConfig(bootstrap_servers=bootstrap).producer_config())
    for partition, key, value in messages:
        producer.produce(topic, value, key, partition=partition)
    assert producer.flush(30) == 0


def open_reader(bootstrap: str, topic: str, table: str) -> KafkaReader:
    config = {**KafkaClientConfig(bootstrap_servers=bootstrap).consumer_config("reader-test"), **client_extras()}
    return KafkaReader.open(config, topic, table, bootstrap)


def test_reads_up_to_the_end_seen_at_open_with_each_batchs_offsets(kafka_bootstrap, kafka_topic, tmp_path):
    ensure_topic(KafkaClientConfig(bootstrap_servers=kafka_bootstrap), kafka_topic, partitions=3)
    first = [(i % 3, f"k{i}".encode(), f'{{"n": {i}}}'.encode()) for i in range(290)]
    odd = [(0, None, b'{"n": "no key"}'), (1, b"tombstone", None), (2, b"k-bad", b"caf\xe9 \xff")]
    produce(kafka_bootstrap, kafka_topic, first + odd)
    table = str(tmp_path / "kafka_orders")

    reader = open_reader(kafka_bootstrap, kafka_topic, table)
    produce(kafka_bootstrap, kafka_topic, [(i % 3, b"late", b"{}") for i in range(60)])  # after the reader's end
    try:
        assert reader.end == {0: 98, 1: 98, 2: 97} and reader.available == 293
        batches = list(reader.batches(64))
        for batch in batches[:2]:
            write_batch(table, batch)
    finally:
        reader.close()

    assert max(batch.rows.height for batch in batches) <= 64
    for batch in batches:
        last = batch.rows.group_by("partition").agg(pl.col("offset").max() + 1)
        assert batch.next_offsets == {kafka_app_id(kafka_topic, p): end for p, end in last.iter_rows()}
    rows = pl.concat([batch.rows for batch in batches]).sort("partition", "offset")
    assert rows.height == 293 and rows.select("partition", "offset").n_unique() == 293
    assert rows.group_by("partition").agg(pl.col("offset").max() + 1).sort("partition").rows() == [(0, 98), (1, 98), (2, 97)]
    assert "late" not in rows["key"].to_list()
    assert rows.filter(pl.col("value") == '{"n": "no key"}')["key"].to_list() == [None]
    assert rows.filter(pl.col("key") == "tombstone")["value"].to_list() == [None]
    assert rows.filter(pl.col("key") == "k-bad")["value"].to_list() == ["caf\ufffd \ufffd"]
    assert rows["timestamp"].null_count() == 0

    # a new reader starts where the table's two committed batches end, and reads the late ones too
    written = pl.concat([batch.rows for batch in batches[:2]])
    reader = open_reader(kafka_bootstrap, kafka_topic, table)
    try:
        for partition in range(3):
            recorded = recorded_offset(table, kafka_app_id(kafka_topic, partition))
            done = written.filter(pl.col("partition") == partition)
            assert reader.start[partition] == (done["offset"].max() + 1 if done.height else 0) == (recorded or 0)
        assert reader.end == {0: 118, 1: 118, 2: 117} and reader.available == 353 - written.height
        rest = [batch.rows for batch in reader.batches(1000)]
    finally:
        reader.close()
    everything = pl.concat([written, *rest]).sort("partition", "offset")
    assert everything.height == 353 and everything.select("partition", "offset").n_unique() == 353
    assert everything.filter(pl.col("key") == "late").height == 60
