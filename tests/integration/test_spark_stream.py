"""The order stream on Spark, on a real Kafka broker and real (local) PySpark: bronze
``kafka_orders`` exactly once, across reruns, a lost checkpoint and a replayed batch, and
silver ``stream_orders`` and its quarantine equal to the local engine's, row for row.

One story runs once per module (Spark's stream start-up is what costs time): produce, ingest
with both engines, rerun, produce more, lose the checkpoint, replay a batch; then silver over
all of it. Each test checks one chapter from what the story recorded.
"""

from __future__ import annotations

import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest
from confluent_kafka import Producer
from deltalake import DeltaTable

from logistics_pipeline.tasks.core.contract import KAFKA_ORDERS
from logistics_pipeline.tasks.core.orders import generate_orders
from logistics_pipeline.tasks.core.quality import TableCounts
from logistics_pipeline.tasks.core.runner import run_stream_orders
from logistics_pipeline.tasks.errors import PipelineError
from logistics_pipeline.tasks.kafka.client import KafkaClientConfig, client_extras, ensure_topic
from logistics_pipeline.tasks.local.lake import Lake
from logistics_pipeline.tasks.local.order_catalog import reference_data
from logistics_pipeline.tasks.local.store import DeltaStore
from logistics_pipeline.tasks.local.stream import KafkaReader, write_batch
from logistics_pipeline.tasks.spark.job import main
from logistics_pipeline.tasks.spark.store import SparkStore
from logistics_pipeline.tasks.spark.stream import KafkaSource, run_stream
from logistics_pipeline.tasks.spark.tables import Lakehouse
from tests.fixtures.spark import assert_same
from tests.local_layers import build_local_layers

pytestmark = [pytest.mark.spark, pytest.mark.kafka]

PARTITIONS = 3
VOLATILE = ("_ingested_at", "_batch_id")  # when and in which batch: differ between engines by design
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
ORDER = (
    '{"event_id":"e-%s","event_time":"%s","order_number":"ZX%s","customer_id":%s,"order_date":"2026-11-20",'
    '"ship_date":"2026-11-27","due_date":"2026-12-02","lines":[{"product_number":"%s","quantity":2,"price":10.0,"sales_amount":20.0}]}'
)


def odd_messages(product: str, customer: int) -> list[tuple[bytes | None, bytes | None]]:
    """Messages the generator does not make: a tombstone, bytes that are not UTF-8, JSON of the
    wrong shape or types, impossible times, and one order replayed on another partition."""
    replayed = (ORDER % ("r", "2026-11-20T10:00:00Z", "1", customer, product)).encode()
    return [
        (b"tomb", None),
        (None, b"not json at all"),
        (b"bad-utf8", (ORDER % ("\udcff", "2026-11-20T10:00:00Z", "2", customer, product)).encode("utf-8", "surrogateescape")),
        (b"k", b"[1, 2]"),
        (b"k", b'{"lines": []}'),
        (b"k", b'{"a": NaN}'),
        (b"k", (ORDER % ("t", "2026-02-30T10:00:00+00:00", "3", customer, product)).encode()),
        (b"k", (ORDER % ("c", "2026-11-20T10:00:00.5Z", "4", '"abc"', product)).encode()),
        (b"k", (ORDER % ("u", "2026-11-20T10:00:00+00:00", "5", customer, "BK-\u00e9")).encode()),
        (b"k", (ORDER % ("n", "2026-11-20T10:00:00.123456+00:00", "6", customer, product)).encode()),
        (b"replay", replayed),
        (b"replay", replayed),
    ]


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes | None]]) -> int:
    """Send to the partitions in turn, wait for every delivery report."""
    producer = Producer({**KafkaClientConfig(bootstrap_servers=bootstrap).producer_config(), **client_extras()})
    for index, (key, value) in enumerate(messages):
        producer.produce(topic, value, key, partition=index % PARTITIONS)
    assert producer.flush(60) == 0
    return len(messages)


def orders(lake: Path, count: int, seed: int) -> list[tuple[bytes, bytes]]:
    reference = reference_data(str(lake))
    return generate_orders(count, seed, reference.customers, reference.products, bad_fraction=0.2, now=NOW).messages


# --- the two engines -------------------------------------------------------------------------

def local_bronze(bootstrap: str, topic: str, lake: Lake) -> None:
    """What the local bronze-layer flow does with the stream, without Prefect."""
    target = lake.uri("bronze", KAFKA_ORDERS)
    config = {**KafkaClientConfig(bootstrap_servers=bootstrap).consumer_config("test-local"), **client_extras()}
    reader = KafkaReader.open(config, topic, target, bootstrap)
    try:
        for batch in reader.batches(100_000):
            write_batch(target, batch)
    finally:
        reader.close()


def local_silver(lake: Lake) -> TableCounts:
    """What the local silver-layer flow does with the stream, without Prefect."""
    return run_stream_orders(DeltaStore(lake))


@dataclass
class SparkEngine:
    """The Spark entrypoint's stream layer (as its command line runs it) and silver stream_orders."""

    spark: object
    bootstrap: str
    topic: str
    lake: Path
    checkpoint: Path

    def stream(self) -> dict:
        args = ["stream", "--lake", str(self.lake), "--bootstrap-servers", self.bootstrap, "--topic", self.topic, "--checkpoint", str(self.checkpoint)]
        return main(args, spark=self.spark)["tables"][0]

    def silver(self) -> TableCounts:
        return run_stream_orders(SparkStore(self.spark, Lakehouse(lake=str(self.lake))))


def table(root: Path, layer: str, name: str = KAFKA_ORDERS) -> pl.DataFrame:
    frame = pl.read_delta(str(root / layer / name))
    frame = frame.drop([column for column in VOLATILE if column in frame.columns])
    return frame.sort(frame.columns, nulls_last=True)


def version(root: Path, layer: str, name: str = KAFKA_ORDERS) -> int:
    return DeltaTable(str(root / layer / name)).version()


@dataclass(frozen=True)
class Ends:
    """Where the story left both engines, for silver to go on from."""

    lake: Lake
    engine: SparkEngine


@dataclass
class Chapter:
    """What one step of the story left: tables of both engines and what the Spark runs said."""

    produced: int
    spark_runs: list[dict] = field(default_factory=list)
    bronze: dict[str, pl.DataFrame] = field(default_factory=dict)
    silver: dict[str, pl.DataFrame] = field(default_factory=dict)
    counts: dict[str, TableCounts] = field(default_factory=dict)
    versions: list[int] = field(default_factory=list)


def record(chapter: Chapter, local_root: Path, spark_root: Path, counts: dict[str, TableCounts] | None = None) -> Chapter:
    """Both engines' bronze, and with ``counts`` (silver was built) their silver and quarantine."""
    chapter.bronze = {"local": table(local_root, "bronze"), "spark": table(spark_root, "bronze")}
    if counts is not None:
        for layer in ("silver", "quarantine"):
            chapter.silver[f"local/{layer}"] = table(local_root, layer, "stream_orders")
            chapter.silver[f"spark/{layer}"] = table(spark_root, layer, "stream_orders")
        chapter.counts = counts
    return chapter


@pytest.fixture(scope="module")
def story(spark, kafka_bootstrap, generated_sources, tmp_path_factory) -> dict:
    started = time.perf_counter()
    work = tmp_path_factory.mktemp("spark-stream")
    local_root, spark_root = work / "local", work / "spark"
    lake = Lake(str(local_root))
    build_local_layers(generated_sources, lake)  # the stream needs products and customers
    for name in ("crm_prd_info", "crm_cust_info"):  # the same products and customers on both sides
        shutil.copytree(local_root / "silver" / name, spark_root / "silver" / name)
    topic = f"spark-stream-{uuid.uuid4().hex[:8]}"
    ensure_topic(KafkaClientConfig(bootstrap_servers=kafka_bootstrap), topic, partitions=PARTITIONS)
    engine = SparkEngine(spark, kafka_bootstrap, topic, spark_root, work / "checkpoint")
    reference = reference_data(str(local_root))
    product, customer = sorted(reference.products)[0], int(reference.customers[0])
    chapters: dict = {}

    first = Chapter(produce(kafka_bootstrap, topic, orders(local_root, 300, 1) + odd_messages(product, customer)))
    first.spark_runs.append(engine.stream())
    local_bronze(kafka_bootstrap, topic, lake)
    chapters["first"] = record(first, local_root, spark_root)

    rerun = Chapter(0)
    rerun.versions = [version(spark_root, "bronze")]
    rerun.spark_runs.append(engine.stream())
    rerun.versions.append(version(spark_root, "bronze"))
    chapters["rerun"] = rerun

    more = Chapter(produce(kafka_bootstrap, topic, orders(local_root, 120, 2)))
    more.spark_runs.append(engine.stream())
    local_bronze(kafka_bootstrap, topic, lake)
    chapters["more"] = record(more, local_root, spark_root)

    shutil.rmtree(engine.checkpoint)  # lost: the next run starts from the offsets in the table
    lost = Chapter(produce(kafka_bootstrap, topic, orders(local_root, 60, 3)))
    lost.spark_runs.append(engine.stream())
    local_bronze(kafka_bootstrap, topic, lake)
    chapters["lost_checkpoint"] = record(lost, local_root, spark_root)

    # A crash after the Delta commit and before the checkpoint's: the next run replays that batch.
    replay = Chapter(produce(kafka_bootstrap, topic, orders(local_root, 30, 4)))
    replay.spark_runs.append(engine.stream())
    commits = sorted((engine.checkpoint / "commits").glob("[0-9]*"), key=lambda path: int(path.name))
    for done in (commits[-1], commits[-1].with_name(f".{commits[-1].name}.crc")):
        done.unlink(missing_ok=True)
    replay.versions = [version(spark_root, "bronze")]
    replay.spark_runs.append(engine.stream())
    replay.versions.append(version(spark_root, "bronze"))
    replay.versions.append(len(list((engine.checkpoint / "commits").glob("[0-9]*"))) - len(commits))
    local_bronze(kafka_bootstrap, topic, lake)
    chapters["replay"] = record(replay, local_root, spark_root)
    chapters["ends"] = Ends(lake, engine)
    print(f"\nspark stream story: {time.perf_counter() - started:.1f}s")
    return chapters


@pytest.fixture(scope="module")
def silver(story) -> Chapter:
    """Silver over the whole story, once per engine (Spark's plan for the rules is what costs time), then again."""
    lake, engine = story["ends"].lake, story["ends"].engine
    chapter = Chapter(0)
    record(chapter, Path(lake.root), engine.lake, {"local": local_silver(lake), "spark": engine.silver()})
    chapter.versions = [version(engine.lake, layer, "stream_orders") for layer in ("silver", "quarantine")]
    chapter.counts["spark again"] = engine.silver()
    chapter.versions += [version(engine.lake, layer, "stream_orders") for layer in ("silver", "quarantine")]
    return chapter


def assert_exactly_once(bronze: pl.DataFrame, messages: int) -> None:
    """Every message once: (partition, offset) unique and gap-free from 0 in every partition."""
    assert bronze.height == messages
    per_partition = bronze.group_by("partition").agg(
        n=pl.len(), unique=pl.col("offset").n_unique(), low=pl.col("offset").min(), high=pl.col("offset").max()
    )
    assert per_partition.height == PARTITIONS
    assert (per_partition["n"] == per_partition["unique"]).all(), "a message was written twice"
    assert (per_partition["low"] == 0).all() and (per_partition["high"] + 1 == per_partition["n"]).all(), "a message is missing"


# --- the chapters ----------------------------------------------------------------------------

def test_every_message_lands_once_as_the_local_engine_lands_it(story):
    first = story["first"]
    assert_exactly_once(first.bronze["spark"], first.produced)
    assert first.spark_runs == [{"table": first.spark_runs[0]["table"], "rows": first.produced, "new_rows": first.produced, "partitions": PARTITIONS}]
    assert_same(first.bronze["local"], first.bronze["spark"], "bronze/kafka_orders")
    values = first.bronze["spark"]["value"]
    assert values.null_count() == 1 and values.str.contains("\ufffd").sum() == 1  # the tombstone; the bad byte replaced


def test_a_rerun_with_nothing_new_writes_nothing(story):
    rerun = story["rerun"]
    assert rerun.spark_runs[0]["new_rows"] == 0
    assert rerun.versions[0] == rerun.versions[1], "bronze got a new commit"


def test_new_messages_are_appended_and_nothing_else(story):
    more = story["more"]
    assert more.spark_runs[0]["new_rows"] == more.produced
    assert_exactly_once(more.bronze["spark"], story["first"].produced + more.produced)
    assert_same(more.bronze["local"], more.bronze["spark"], "bronze/kafka_orders")


def test_a_lost_checkpoint_starts_from_the_offsets_in_the_table(story):
    lost = story["lost_checkpoint"]
    assert lost.spark_runs[0]["new_rows"] == lost.produced
    assert_exactly_once(lost.bronze["spark"], sum(story[name].produced for name in ("first", "more", "lost_checkpoint")))
    assert_same(lost.bronze["local"], lost.bronze["spark"], "bronze/kafka_orders")


def test_a_replayed_batch_is_skipped_by_delta(story):
    replay = story["replay"]
    first_run, replayed = replay.spark_runs
    assert first_run["new_rows"] == replay.produced
    assert replayed["new_rows"] == 0
    before, after, commits_added = replay.versions
    assert after == before, "the replayed batch made a Delta commit"
    assert commits_added == 0, "the replayed batch was not run and committed to the checkpoint again"
    assert_exactly_once(replay.bronze["spark"], sum(story[name].produced for name in ("first", "more", "lost_checkpoint", "replay")))
    assert_same(replay.bronze["local"], replay.bronze["spark"], "bronze/kafka_orders")


def test_a_checkpoint_ahead_of_an_empty_table_is_refused(story, tmp_path):
    """The table dropped, the checkpoint kept: resuming would skip every message read before."""
    engine = story["ends"].engine
    source = KafkaSource(engine.bootstrap, engine.topic)
    with pytest.raises(PipelineError, match="delete the checkpoint to read the topic from the start"):
        run_stream(engine.spark, Lakehouse(lake=str(tmp_path)), source, str(engine.checkpoint))
    assert not (tmp_path / "bronze").exists()


def test_silver_stream_orders_and_quarantine_equal_the_local_engine(silver):
    for layer in ("silver", "quarantine"):
        assert_same(silver.silver[f"local/{layer}"], silver.silver[f"spark/{layer}"], f"{layer}/stream_orders")
    counts = silver.counts["spark"]
    assert counts == silver.counts["local"]
    assert counts.rows_in == counts.rows_out + counts.quarantined + counts.merged_duplicates
    assert counts.merged_duplicates == 1  # the replayed order
    rules = set(silver.silver["spark/quarantine"]["_rule"])
    assert {"not_json", "wrong_shape", "missing_field", "mistyped_field", "non_positive_price", "ship_before_order"} <= rules


def test_silver_on_unchanged_inputs_writes_nothing(silver):
    assert silver.versions[:2] == silver.versions[2:], "stream_orders or its quarantine got a new commit"
    assert silver.counts["spark again"] == silver.counts["spark"]
