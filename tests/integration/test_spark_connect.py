"""The Spark job unchanged under Spark Connect (what Databricks serverless and standard access
mode run user code through), equal to the local engine row for row.

One story on the Connect client: bronze over a generated export, the order stream from a real
Kafka broker into bronze ``kafka_orders``, then silver (every table and ``stream_orders``); the
local engine does the same, and every table is compared as in ``test_spark_parity.py`` and
``test_spark_stream.py``, whose helpers this reuses. Classic Spark equals the local engine in
those modules, so Connect equals classic too. Empty inputs (a header-only export, an empty
topic) run on both kinds of session: Connect cannot infer a schema from an empty table.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from logistics_pipeline.tasks.core.contract import KAFKA_ORDERS, SOURCES, STREAM_ORDERS
from logistics_pipeline.tasks.core.quality import TableCounts
from logistics_pipeline.tasks.core.runner import run_stream_orders
from logistics_pipeline.tasks.core.silver import SILVER_TABLES
from logistics_pipeline.tasks.kafka.client import KafkaClientConfig, ensure_topic
from logistics_pipeline.tasks.local.lake import Lake
from logistics_pipeline.tasks.local.order_catalog import reference_data
from logistics_pipeline.tasks.spark.job import main
from logistics_pipeline.tasks.spark.store import SparkStore
from logistics_pipeline.tasks.spark.stream import KAFKA_ORDERS_ARROW
from logistics_pipeline.tasks.spark.tables import Lakehouse
from tests.fixtures.spark import assert_same
from tests.integration.test_spark_parity import lake_table, run_local, versions, write_sources
from tests.integration.test_spark_stream import (
    PARTITIONS,
    assert_exactly_once,
    local_bronze,
    local_silver,
    odd_messages,
    orders,
    produce,
    table,
)

pytestmark = [pytest.mark.spark, pytest.mark.kafka]

SESSIONS = ["spark", pytest.param("spark_connect", marks=pytest.mark.connect)]


@dataclass(frozen=True)
class Run:
    """Both engines' lakes over the same inputs, and what each reported."""

    sources: Path
    local: Path
    spark: Path
    local_counts: dict[str, TableCounts | str]
    summaries: dict[str, dict]
    produced: int
    session: object


def run_job(session, lake: Path, sources: Path, bootstrap: str, topic: str, checkpoint: Path) -> dict[str, dict]:
    """Bronze, the stream, then silver, as a Databricks job runs them (the command line); the
    time of each is printed with ``-s``."""
    target = ["--lake", str(lake)]
    stream = ["--bootstrap-servers", bootstrap, "--topic", topic, "--checkpoint", str(checkpoint)]
    summaries, seconds = {}, {}
    for layer, args in (("bronze", ["--source-path", str(sources)]), ("stream", stream), ("silver", [])):
        started = time.perf_counter()
        summaries[layer] = main([layer, *target, *args], spark=session)
        seconds[layer] = f"{time.perf_counter() - started:.1f}s"
    print(f"\n{type(session).__module__}: {seconds}")
    return summaries


def new_topic(bootstrap: str, name: str) -> str:
    topic = f"{name}-{uuid.uuid4().hex[:8]}"
    ensure_topic(KafkaClientConfig(bootstrap_servers=bootstrap), topic, partitions=PARTITIONS)
    return topic


# --- bronze, the stream and silver under Connect ----------------------------------------------

@pytest.fixture(scope="module")
def connect_run(spark_connect, kafka_bootstrap, tmp_path_factory) -> Run:
    from logistics_pipeline.datasets.generate import generate_datasets

    work = tmp_path_factory.mktemp("spark-connect")
    sources = work / "sources"
    generate_datasets(sources, scale=0.05, seed=5)
    lake = Lake(str(work / "local"))
    local_counts = run_local(sources, work / "local")  # bronze and silver; the stream's products and customers
    topic = new_topic(kafka_bootstrap, "spark-connect")
    reference = reference_data(lake.root)
    odd = odd_messages(sorted(reference.products)[0], int(reference.customers[0]))
    produced = produce(kafka_bootstrap, topic, orders(work / "local", 200, 1) + odd)
    local_bronze(kafka_bootstrap, topic, lake)
    local_counts[STREAM_ORDERS] = local_silver(lake)
    summaries = run_job(spark_connect, work / "spark", sources, kafka_bootstrap, topic, work / "checkpoint")
    return Run(sources, work / "local", work / "spark", local_counts, summaries, produced, spark_connect)


def test_bronze_under_connect_equals_the_local_engine(connect_run):
    for source in SOURCES:
        local, spark = lake_table(connect_run.local, "bronze", source.table), lake_table(connect_run.spark, "bronze", source.table)
        assert_same(local, spark, f"bronze/{source.table}")
    assert [row["rows"] for row in connect_run.summaries["bronze"]["tables"]] == [
        lake_table(connect_run.local, "bronze", source.table).height for source in SOURCES
    ]


def test_the_stream_under_connect_lands_every_message_once(connect_run):
    produced = connect_run.produced
    stream = connect_run.summaries["stream"]["tables"][0]
    assert (stream["rows"], stream["new_rows"], stream["partitions"]) == (produced, produced, PARTITIONS)
    bronze = table(connect_run.spark, "bronze", KAFKA_ORDERS)
    assert_exactly_once(bronze, produced)
    assert_same(table(connect_run.local, "bronze", KAFKA_ORDERS), bronze, f"bronze/{KAFKA_ORDERS}")


def test_silver_under_connect_equals_the_local_engine(connect_run):
    for layer in ("silver", "quarantine"):
        for name in (t.name for t in SILVER_TABLES):
            assert_same(lake_table(connect_run.local, layer, name), lake_table(connect_run.spark, layer, name), f"{layer}/{name}")
        stream_orders = table(connect_run.local, layer, STREAM_ORDERS), table(connect_run.spark, layer, STREAM_ORDERS)
        assert_same(*stream_orders, f"{layer}/{STREAM_ORDERS}")  # without _batch_id: the engines batch differently
    counts = {row["table"]: TableCounts(**row) for row in connect_run.summaries["silver"]["tables"]}
    assert counts == connect_run.local_counts
    assert counts[STREAM_ORDERS].merged_duplicates == 1 and counts[STREAM_ORDERS].quarantined > 0  # the replayed order; the odd messages
    assert any(c.quarantined for name, c in counts.items() if name != STREAM_ORDERS)


def layer_versions(lake: Path) -> dict[str, int]:
    return {name: version for name, version in versions(lake).items() if name.split("/")[0] in ("bronze", "silver", "quarantine")}


def test_a_rerun_under_connect_writes_nothing(connect_run):
    before = layer_versions(connect_run.spark)
    bronze = main(["bronze", "--source-path", str(connect_run.sources), "--lake", str(connect_run.spark)], spark=connect_run.session)
    silver = main(["silver", "--lake", str(connect_run.spark)], spark=connect_run.session)
    assert layer_versions(connect_run.spark) == before
    assert all(row["skipped"] for row in bronze["tables"])
    assert (silver["tables"], silver["failed"]) == (connect_run.summaries["silver"]["tables"], [])


# --- empty inputs, on both kinds of session ---------------------------------------------------

@pytest.fixture(scope="module", params=SESSIONS)
def empty_run(request, kafka_bootstrap, tmp_path_factory) -> dict:
    """A header-only export and a topic without messages through bronze, the stream and silver
    stream_orders (silver's other tables cost Spark's planning whatever the rows), and the local engine."""
    session = request.getfixturevalue(request.param)
    work = tmp_path_factory.mktemp(f"empty-{request.param}")
    sources = write_sources(work / "sources", {})
    run_local(sources, work / "local")  # an empty stream_orders too, as without a stream
    lakehouse, spark_lake = Lakehouse(lake=str(work / "spark")), ["--lake", str(work / "spark")]
    started = time.perf_counter()
    bronze = main(["bronze", "--source-path", str(sources), *spark_lake], spark=session)
    before_stream = run_stream_orders(SparkStore(session, lakehouse))  # no kafka_orders yet: an empty stream_orders
    before_stream_orders = lake_table(work / "spark", "silver", STREAM_ORDERS)
    topic = new_topic(kafka_bootstrap, "spark-empty")
    stream = ["--bootstrap-servers", kafka_bootstrap, "--topic", topic, "--checkpoint", str(work / "checkpoint")]
    streamed = main(["stream", *spark_lake, *stream], spark=session)["tables"][0]
    after_stream = run_stream_orders(SparkStore(session, lakehouse))
    print(f"\nempty inputs on {type(session).__module__}: {time.perf_counter() - started:.1f}s")
    return {
        "local": work / "local", "spark": work / "spark", "bronze": bronze,
        "before_stream": before_stream, "before_stream_orders": before_stream_orders, "streamed": streamed, "after_stream": after_stream,
    }


def test_a_header_only_export_gives_empty_tables(empty_run):
    local, spark = empty_run["local"], empty_run["spark"]
    assert [row["rows"] for row in empty_run["bronze"]["tables"]] == [0] * len(SOURCES)
    for source in SOURCES:
        assert_same(lake_table(local, "bronze", source.table), lake_table(spark, "bronze", source.table), f"bronze/{source.table}")


def test_without_a_stream_stream_orders_is_created_empty(empty_run):
    assert empty_run["before_stream"] is None
    assert_same(lake_table(empty_run["local"], "silver", STREAM_ORDERS), empty_run["before_stream_orders"], f"silver/{STREAM_ORDERS}")
    assert empty_run["before_stream_orders"].is_empty()


def test_an_empty_topic_gives_an_empty_bronze_and_stream_orders(empty_run):
    """Spark commits the first batch of a new checkpoint even when it holds nothing."""
    assert (empty_run["streamed"]["rows"], empty_run["streamed"]["new_rows"], empty_run["streamed"]["partitions"]) == (0, 0, PARTITIONS)
    bronze = pl.read_delta(str(empty_run["spark"] / "bronze" / KAFKA_ORDERS))
    assert bronze.is_empty() and bronze.schema == pl.from_arrow(KAFKA_ORDERS_ARROW.empty_table()).schema
    assert empty_run["after_stream"] == TableCounts(STREAM_ORDERS, 0, 0, 0, 0)
    stream_orders = table(empty_run["spark"], "silver", STREAM_ORDERS)
    assert_same(table(empty_run["local"], "silver", STREAM_ORDERS), stream_orders, f"silver/{STREAM_ORDERS}")
    assert stream_orders.is_empty() and table(empty_run["spark"], "quarantine", STREAM_ORDERS).is_empty()
