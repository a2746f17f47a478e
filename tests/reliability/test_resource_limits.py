"""Resource limits: the producer's local queue is bounded and pushes back, stream batches are
bounded by LOGISTICS_STREAM_BATCH_MESSAGES, and the memory a bronze ingest needs is measured
on sources 100 and 300 times the shipped one's size (scale 10 and 30: 0.6M and 1.8M sales lines)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.reliability import ROOT, cli_env

UNREACHABLE = "127.0.0.1:1"


def test_the_producer_queue_is_bounded():
    from logistics_pipeline.tasks.kafka.connection import KafkaConnection

    config = KafkaConnection(bootstrap_servers=UNREACHABLE).producer_config()
    assert 0 < config["queue.buffering.max.messages"] <= 1_000_000
    assert 0 < config["queue.buffering.max.kbytes"] <= 1 << 20  # at most 1 GiB of queued messages
    assert config["enable.idempotence"] is True and config["acks"] == "all"
    assert config["message.timeout.ms"] <= 5 * 60_000  # an undeliverable message fails in bounded time


def test_a_full_producer_queue_pushes_back_instead_of_growing():
    """With a 10-message queue and no broker, `send` waits on the queue (BufferError -> poll),
    then stops at the first failed delivery; it neither raises nor queues more than 10."""
    from logistics_pipeline.flows.produce import KafkaSink
    from logistics_pipeline.tasks.kafka.connection import KafkaConnection

    connection = KafkaConnection(
        bootstrap_servers=UNREACHABLE,
        extra={"queue.buffering.max.messages": "10", "message.timeout.ms": "1500", "linger.ms": "0"},
    )
    sink = KafkaSink(connection, "orders")
    started = time.monotonic()
    try:
        keys = [f"k{i}".encode() for i in range(200)]
        assert sink.send(keys, [b"{}"] * 200) is False
        assert len(sink._producer) <= 10
    finally:
        sink.abort()
    assert sink.first_error and sink.delivered == 0
    assert time.monotonic() - started < 30


def test_landing_batches_are_bounded_by_the_batch_setting(tmp_path, monkeypatch):
    from logistics_pipeline.tasks.local.stream import landing_batches
    from logistics_pipeline.tasks.settings import load_settings

    monkeypatch.setenv("LOGISTICS_STREAM_BATCH_MESSAGES", "64")
    limit = load_settings().stream_batch_messages
    assert limit == 64
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "orders-1.jsonl").write_text("{}\n" * 1000)
    (landing / "orders-2.jsonl").write_text("{}\n" * 70)
    sizes = [batch.rows.height for batch in landing_batches(landing, str(tmp_path / "t"), limit)]
    assert max(sizes) <= 64 and sum(sizes) == 1070


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(data=st.lists(st.sampled_from([b"{}", b"\n", b"\r", b"\r\n", b"\x0b", b"\x0c", b"\x1c", b"\x85", "é".encode(), b" "]), max_size=30).map(b"".join))
def test_landing_lines_are_read_lazily_with_the_offsets_of_a_whole_file_read(data):
    """Offsets recorded by earlier runs (which split the whole file with bytes.splitlines) keep
    pointing at the same lines."""
    from logistics_pipeline.tasks.local.stream import landing_lines

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "orders-1.jsonl"
        path.write_bytes(data)
        assert list(landing_lines(path)) == data.splitlines()


def test_landing_batches_resume_at_the_recorded_line(tmp_path):
    from logistics_pipeline.tasks.local.stream import landing_batches, write_batch

    landing, table = tmp_path / "landing", str(tmp_path / "t")
    landing.mkdir()
    (landing / "orders-1.jsonl").write_bytes(b"".join(b'{"n": %d}\n' % n for n in range(10)))
    write_batch(table, next(landing_batches(landing, table, 4)))
    batches = list(landing_batches(landing, table, 4))
    assert [batch.rows["offset"].to_list() for batch in batches] == [[4, 5, 6, 7], [8, 9]]
    assert batches[0].rows["value"].to_list() == [f'{{"n": {n}}}' for n in range(4, 8)]
    assert [batch.next_offsets for batch in batches] == [{"landing-orders-1.jsonl": 8}, {"landing-orders-1.jsonl": 10}]


@pytest.mark.kafka
def test_kafka_batches_are_bounded_by_the_batch_setting(kafka_bootstrap, kafka_topic, tmp_path):
    from confluent_kafka import Producer

    from logistics_pipeline.tasks.kafka.client import ensure_topic
    from logistics_pipeline.tasks.kafka.connection import KafkaConnection
    from logistics_pipeline.tasks.local.stream import KafkaReader

    connection = KafkaConnection(bootstrap_servers=kafka_bootstrap)
    ensure_topic(connection.client(), kafka_topic, partitions=3)
    producer = Producer(connection.producer_config())
    for i in range(1000):
        producer.produce(kafka_topic, b"{}", f"k{i}".encode())
    assert producer.flush(30) == 0
    reader = KafkaReader.open(connection.consumer_config("bounded"), kafka_topic, str(tmp_path / "t"), kafka_bootstrap)
    try:
        sizes = [batch.rows.height for batch in reader.batches(64)]
    finally:
        reader.close()
    assert max(sizes) <= 64 and sum(sizes) == 1000


# --- memory of a bronze ingest --------------------------------------------------------------

PEAK = (
    "import resource, subprocess, sys;"
    "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True);"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, done.returncode, repr(done.stderr[-500:]))"
)


def peak_rss_mb(args: list[str], env: dict[str, str]) -> float:
    """Peak resident memory of one CLI run, measured by a parent that has no other child."""
    out = subprocess.run([sys.executable, "-c", PEAK, sys.executable, "-m", "logistics_pipeline.flows.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    kilobytes, code, stderr = out.stdout.split(" ", 2)
    assert code == "0", stderr
    return int(kilobytes) / 1024


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_bronze_memory_does_not_grow_with_the_source(tmp_path):
    """Peak RSS of `bronze` at scale 10 (~600k sales lines, 37 MB) and scale 30 (1.8M, 112 MB).

    What grows between the two is what the ingest holds per byte of input: reading a file
    whole costs several times its size (the parsed frame, its Arrow export, the Parquet
    encoder's buffers), the chunked ingest (``tasks.core.csv_source.READ_CHUNK_BYTES`` per chunk,
    streamed into one Delta commit) a few chunks in flight and one output file. The bound, 1.5x
    the growth of the largest file, leaves room for allocator noise (the chunked ingest grew by
    0.9x, 486 -> 550 MB; the whole-file read by 5.2x, 503 -> 878 MB)."""
    from logistics_pipeline.datasets.generate import generate_datasets

    peaks, largest = {}, {}
    for scale in (10, 30):
        sources = tmp_path / f"scale-{scale}"
        generate_datasets(sources, scale=scale, seed=1)
        largest[scale] = max(path.stat().st_size for path in sources.rglob("*.csv")) / 2**20
        peaks[scale] = peak_rss_mb(["bronze"], cli_env(tmp_path / f"lake-{scale}", sources))
    growth, file_growth = peaks[30] - peaks[10], largest[30] - largest[10]
    print(
        f"bronze peak RSS: {peaks[10]:.0f} MB at scale 10 (largest file {largest[10]:.0f} MiB), {peaks[30]:.0f} MB at scale 30 "
        f"({largest[30]:.0f} MiB): +{growth:.0f} MB for +{file_growth:.0f} MiB of file ({growth / file_growth:.1f}x)"
    )
    assert growth < 1.5 * file_growth, f"bronze needed {growth:.0f} MB more for {file_growth:.0f} MiB more input"
