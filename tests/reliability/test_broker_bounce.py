"""Broker bounce: restart the Kafka broker (SIGKILL, or a clean SIGTERM stop) while `produce`
runs and while `bronze` ingests. Afterwards every message of the topic is in bronze exactly
once, every produced order is there, and each command either completed or failed with one
line and succeeded when run again.
"""

from __future__ import annotations

import threading
import time

import polars as pl
import pytest
from confluent_kafka import Consumer, TopicPartition

from logistics_pipeline.tasks.core.orders import ORDER_PREFIX
from tests.reliability import CliProcess, cli_env, run_cli

pytestmark = [pytest.mark.kafka, pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]

ORDERS = 20_000
RATE = 4_000  # messages/s: the produce runs about 5 s, long enough to bounce the broker under it
INGEST_BATCH = 250


@pytest.fixture
def bounceable(kafka_broker):
    if not hasattr(kafka_broker, "restart"):
        pytest.skip("KAFKA_BOOTSTRAP_SERVERS names a broker this session cannot restart")
    yield kafka_broker
    if not kafka_broker.is_running():  # never leave the session without its broker
        kafka_broker.start(timeout=120)


def bounce_in_background(broker, kill: bool, while_down=lambda: None) -> tuple[threading.Thread, dict]:
    """Stop the broker (SIGKILL or SIGTERM), note ``while_down()``, start it on the same data dir."""
    info: dict = {}

    def bounce() -> None:
        started = time.monotonic()
        try:
            broker.stop(kill=kill)
            info["while down"] = while_down()
            broker.start(timeout=120)
        except Exception as error:  # noqa: BLE001 - reported by the test
            info["error"] = error
        info["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=bounce)
    thread.start()
    return thread, info


def topic_positions(bootstrap: str, topic: str) -> tuple[set[tuple[int, int]], set[str]]:
    """Every (partition, offset) in the topic and every key, read with a plain consumer."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{topic}", "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in partitions}
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions if ends[p] > 0])
        positions, keys = set(), set()
        deadline = time.monotonic() + 120
        while sum(1 for p in positions) < sum(ends.values()) and time.monotonic() < deadline:
            for message in consumer.consume(10_000, timeout=1.0):
                if message.error() is None:
                    positions.add((message.partition(), message.offset()))
                    keys.add(message.key().decode())
        return positions, keys
    finally:
        consumer.close()


def completed_or_one_line_then_rerun(cli: CliProcess, args: list[str], env: dict[str, str]) -> str:
    """The outcome of a bounced command: 'completed', or 'failed: <line>' after a successful rerun."""
    code = cli.finish(timeout=600)
    if code == 0:
        return "completed"
    last = cli.output.strip().splitlines()[-1]
    assert code == 1 and last.startswith("error: "), cli.tail()
    assert "Traceback" not in cli.output.split("error: ")[-1]
    rerun = run_cli(args, env)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    return f"failed, then the rerun succeeded: {last[:200]}"


@pytest.mark.parametrize("kill", [True, False], ids=["sigkill", "sigterm"])
def test_broker_restarts_during_produce_and_during_ingest(bounceable, tmp_path, kill):
    broker = bounceable
    topic = f"bounce-{'kill' if kill else 'term'}-{int(time.time())}"
    seed = 500 + int(kill)
    lake, sources = tmp_path / "lake", tmp_path / "sources"
    from logistics_pipeline.datasets.generate import generate_datasets

    generate_datasets(sources, scale=0.02, seed=2)
    env = cli_env(lake, sources, KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap, LOGISTICS_KAFKA_TOPIC=topic, LOGISTICS_STREAM_BATCH_MESSAGES=str(INGEST_BATCH))
    outcomes = {}

    # 1. produce, bounced half a second after the first progress line
    produce = ["produce", "--orders", ORDERS, "--seed", seed, "--rate", RATE, "--partitions", 3]
    cli = CliProcess.start(produce, env)
    assert cli.wait_for(r"produced \d+ of \d+ messages", timeout=180) is not None, cli.tail()
    time.sleep(0.5)
    progress = lambda: next((line.split(" - ")[-1] for line in reversed(cli.output.splitlines()) if "produced" in line), None)  # noqa: E731
    bouncer, info = bounce_in_background(broker, kill, progress)
    outcomes["produce"] = completed_or_one_line_then_rerun(cli, [str(a) for a in produce], env)
    bouncer.join()
    assert "error" not in info, info
    outcomes["produce: bounce took s"] = round(info["seconds"], 1)
    outcomes["produce: progress when the broker went down"] = info["while down"]

    # 2. bronze, bounced a moment after it starts reading the topic
    cli = CliProcess.start(["bronze"], env)
    assert cli.wait_for(r"messages to ingest", timeout=180) is not None, cli.tail()
    time.sleep(0.3)
    table = lake / "bronze" / "kafka_orders"
    rows = lambda: pl.read_delta(str(table)).height if table.exists() else 0  # noqa: E731
    bouncer, info = bounce_in_background(broker, kill, rows)
    outcomes["bronze"] = completed_or_one_line_then_rerun(cli, ["bronze"], env)
    bouncer.join()
    assert "error" not in info, info
    outcomes["bronze: bounce took s"] = round(info["seconds"], 1)
    outcomes["bronze: rows in bronze when the broker went down"] = info["while down"]
    print(outcomes)

    # a run after the bounce adds nothing; then compare with the topic itself
    from logistics_pipeline.flows.bronze import bronze_layer

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LOGISTICS_KAFKA_TOPIC", topic)
        rows_after_rerun = bronze_layer(source_dir=str(sources), lake=str(lake), bootstrap_servers=broker.bootstrap)["kafka_orders"]
    bronze = pl.read_delta(str(lake / "bronze" / "kafka_orders"))
    positions, keys = topic_positions(broker.bootstrap, topic)
    assert rows_after_rerun == bronze.height == len(positions)
    in_bronze = set(zip(bronze["partition"].to_list(), bronze["offset"].to_list(), strict=True))
    assert bronze.height == len(in_bronze), "a message is in bronze twice"
    assert in_bronze == positions, f"{len(positions - in_bronze)} messages missing, {len(in_bronze - positions)} unknown"
    expected_keys = {f"{ORDER_PREFIX}{seed:06d}{i:010d}" for i in range(ORDERS)}
    assert set(bronze["key"]) == keys == expected_keys, "a produced order is missing"
