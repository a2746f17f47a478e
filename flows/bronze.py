"""bronze-layer: land every CSV export as a Delta table of text columns, then the order stream.

All files are checked first, so one bad file stops the layer before anything is written.
Files whose content is already in the lake are not ingested again. The stream is read up to
where it ended when the run started, batch by batch, exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Literal

from prefect import Task, flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.futures import PrefectFuture, wait
from pydantic import Field

from logistics_pipeline.tasks.core.contract import KAFKA_ORDERS, SOURCES
from logistics_pipeline.tasks.core.csv_source import CsvFingerprint
from logistics_pipeline.tasks.kafka.client import client_extras
from logistics_pipeline.tasks.kafka.connection import KafkaConnection, check_broker, load_kafka_connection
from logistics_pipeline.tasks.local.lake import DamagedTableError, Lake, repair, row_count, table_problem
from logistics_pipeline.tasks.local.stream import Batch, KafkaReader, landing_batches
from logistics_pipeline.tasks.orchestration.assets import (
    landing_asset,
    source_asset,
    table_asset,
    topic_asset,
)
from logistics_pipeline.tasks.orchestration.caching import is_stale
from logistics_pipeline.tasks.orchestration.lock import lake_lock
from logistics_pipeline.tasks.orchestration.progress import Progress
from logistics_pipeline.tasks.orchestration.steps import check_source, ingest_source, write_stream_batch
from logistics_pipeline.tasks.settings import load_settings


@flow(name="bronze-layer")
def bronze_layer(
    source_dir: Annotated[str | None, Field(description="Folder with source_crm/ and source_erp/ (default: LOGISTICS_SOURCE_DIR or the shipped datasets).")] = None,
    lake: Annotated[str | None, Field(description="Lake folder (default: LOGISTICS_LAKE or ./lake).")] = None,
    bootstrap_servers: Annotated[str | None, Field(description="HOST:PORT of Kafka; empty uses settings, else the landing folder.")] = None,
    kafka_block: Annotated[str | None, Field(description="Name of a saved 'Kafka Connection' block.")] = None,
    engine: Annotated[Literal["local", "databricks"] | None, Field(description="local (in-process) or databricks (a job run); default LOGISTICS_ENGINE.")] = None,
) -> dict[str, int]:
    """Ingest the six CRM/ERP CSV files and the order stream into bronze; returns rows per table
    (with engine=databricks, as the job runs report them).

    Args:
        source_dir: Folder with source_crm/ and source_erp/ (default: LOGISTICS_SOURCE_DIR or the shipped datasets).
        lake: Lake folder (default: LOGISTICS_LAKE or ./lake).
        bootstrap_servers: HOST:PORT of Kafka; empty uses settings, else the landing folder.
        kafka_block: Name of a saved 'Kafka Connection' block.
        engine: local (in-process) or databricks (a job run); default LOGISTICS_ENGINE.
    """
    settings = load_settings(source_dir=source_dir, lake=lake, kafka_bootstrap_servers=bootstrap_servers, engine=engine)
    if settings.engine == "databricks":
        # Imported here: databricks-sdk takes over a second to import, and only this engine needs it.
        from logistics_pipeline.tasks.databricks.jobs import run_on_databricks, stream_settings
        from logistics_pipeline.tasks.databricks.output import bronze_tables

        # The stream too, when Kafka is configured (the landing folder is the local engine's only).
        stream = stream_settings(settings.databricks, load_kafka_connection(kafka_block, settings), settings.kafka_topic)
        summaries = [run_on_databricks("bronze", settings.databricks)]
        if stream is not None:
            summaries.append(run_on_databricks("stream", stream))
        tables = [table for summary in summaries for table in bronze_tables(summary)]
        for t in tables:
            get_run_logger().info("bronze %s: %d rows (%s, on Databricks)", t.table, t.rows, "ingested" if t.ingested else "unchanged")
        rows = {t.table: t.rows for t in tables}
        publish_bronze(rows, {t.table: t.ingested for t in tables})
        return rows
    with lake_lock(settings.lake):
        lake_ = Lake(settings.lake)
        logger = get_run_logger()
        checked = check_sources(settings.source_dir)

        rows: dict[str, int] = {}
        ingested: dict[str, bool] = {}
        megabytes = {table: fingerprint.size_bytes / 1e6 for table, fingerprint in checked.items()}
        with Progress("bronze-files-progress", "bronze", "MB of CSV", total=sum(megabytes.values()), description="CSV exports landed in bronze") as progress:
            for source in SOURCES:
                target = lake_.uri("bronze", source.table)
                if warning := repair(target, f"the export {source.relative_path}"):
                    logger.warning(warning)
                fingerprint = checked[source.table].sha256
                ingested[source.table] = is_stale(target, fingerprint)
                ingest = ingest_source.with_options(
                    assets=[table_asset(settings.lake, "bronze", source.table)],
                    asset_deps=[source_asset(source.path(settings.source_dir))],
                    refresh_cache=ingested[source.table],
                )
                rows[source.table] = ingest(source, settings.source_dir, target_uri=target, fingerprint=fingerprint, checked=checked[source.table])
                logger.info("bronze %s: %d rows (%s)", source.table, rows[source.table], "ingested" if ingested[source.table] else "unchanged")
                progress.advance(megabytes[source.table], note=source.relative_path)

        connection = load_kafka_connection(kafka_block, settings)
        check_stream_table(lake_.uri("bronze", KAFKA_ORDERS))
        new_messages = ingest_stream(connection, settings.kafka_topic, lake_, settings.stream_batch_messages)
        rows[KAFKA_ORDERS] = row_count(lake_.uri("bronze", KAFKA_ORDERS))
        ingested[KAFKA_ORDERS] = new_messages > 0
        logger.info("bronze %s: %d rows (%d new messages)", KAFKA_ORDERS, rows[KAFKA_ORDERS], new_messages)

        publish_bronze(rows, ingested)
        return rows


def check_sources(source_dir: Path) -> dict[str, CsvFingerprint]:
    """Check the six exports at once (hashing and counting bytes release the GIL, so the large
    sales file is read beside the others); the first refused file in SOURCES order stops the
    layer, and any other refused file is logged with it, so one run names them all."""
    futures = {source.table: check_source.submit(source, source_dir) for source in SOURCES}
    wait(list(futures.values()))
    refused = [future.state.result(raise_on_failure=False) for future in futures.values() if future.state.is_failed()]
    for error in refused[1:]:
        get_run_logger().error("also refused: %s", error)
    return {table: future.result() for table, future in futures.items()}


def publish_bronze(rows: dict[str, int], ingested: dict[str, bool]) -> None:
    """The bronze-layer artifact, whichever engine ran the layer."""
    create_table_artifact(
        key="bronze-layer",
        table=[{"table": table, "rows": rows[table], "ingested": ingested[table]} for table in rows],
        description="Rows per bronze table this run; `ingested` is false when the content was already in the lake.",
    )


def ingest_stream(connection: KafkaConnection | None, topic: str, lake_: Lake, batch_messages: int) -> int:
    """Append the stream's new messages to bronze kafka_orders; returns how many were added."""
    logger = get_run_logger()
    target = lake_.uri("bronze", KAFKA_ORDERS)
    write = write_stream_batch.with_options(
        assets=[table_asset(lake_.root, "bronze", KAFKA_ORDERS)],
        asset_deps=[landing_asset(lake_.root) if connection is None else topic_asset(connection.bootstrap_servers, topic)],
    )
    if connection is None:
        landing = Path(lake_.landing_orders)
        logger.info("stream transport: landing folder %s (no Kafka configured)", landing)
        with Progress("bronze-stream-progress", "bronze kafka_orders", "new messages", description="Landing-folder messages landed in bronze") as progress:
            return write_while_reading(write, target, landing_batches(landing, target, batch_messages), lambda batch: progress.advance(batch.rows.height))

    logger.info("stream transport: Kafka at %s, topic %s", connection.bootstrap_servers, topic)
    check_broker(connection)
    config = {**connection.consumer_config("logistics-bronze"), **client_extras()}
    reader = KafkaReader.open(config, topic, target, connection.bootstrap_servers)
    logger.info("topic %s: %d messages to ingest (from %s to %s)", topic, reader.available, reader.start, reader.end)
    def written(batch: Batch) -> None:
        reader.commit_group_offsets(batch.next_offsets)
        progress.advance(batch.rows.height)

    try:
        with Progress("bronze-stream-progress", "bronze kafka_orders", "messages", total=reader.available, description=f"Messages of topic {topic} landed in bronze") as progress:
            return write_while_reading(write, target, reader.batches(batch_messages), written)
    finally:
        reader.close()


def write_while_reading(write: Task[..., int], target: str, batches: Iterator[Batch], written: Callable[[Batch], None]) -> int:
    """Append every batch, each written (a task run in a worker thread: delta-rs writes without
    the GIL) while the next one is read; returns the rows appended.

    One write at a time and in batch order, each its own commit with its end offsets, as when
    they ran one after the other: a crash leaves whole batches, a prefix of them. Memory holds
    two batches, the one being written and the one being read. ``written`` follows each write."""
    rows = 0
    pending: tuple[PrefectFuture[int], Batch] | None = None
    try:
        for batch in batches:
            if pending is not None:
                rows += pending[0].result()
                written(pending[1])
            pending = (write.submit(target, batch), batch)
        if pending is not None:
            rows += pending[0].result()
            written(pending[1])
    finally:
        if pending is not None:
            pending[0].wait()  # a failed read returns (raises) only once the write it overlapped is over
    return rows


def check_stream_table(uri: str) -> None:
    """bronze kafka_orders is the stream's history: no export can rebuild it, so a damaged one
    stops the layer, named, before anything is appended to it."""
    problem = table_problem(uri)
    if problem is not None:
        raise DamagedTableError(
            uri, f"{problem}; it holds the stream's history and cannot be rebuilt from an export: restore it from a backup, "
            "or move it away to read the topic again from its earliest retained offset",
        )
