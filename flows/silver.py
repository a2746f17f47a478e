"""silver-layer: typed, cleansed, deduplicated tables; rejected rows go to quarantine; the
dimensions' sources keep every version in the lake's history; each run appends its counts per table
and rule to the lake's quality results, and fails over a quality threshold (LOGISTICS_QUALITY_*).

For every table: rows in = rows out + quarantined + merged duplicates, reported as a
table artifact. A table whose bronze input has not changed is not rebuilt, unless
``full_refresh``. A silver or quarantine table that cannot be trusted (a damaged log, lost
files) is set aside and rebuilt from bronze.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import datetime, timezone
from typing import Annotated, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from logistics_pipeline.tasks.core.contract import KAFKA_ORDERS, STREAM_ORDERS
from logistics_pipeline.tasks.core.drift import drift_markdown
from logistics_pipeline.tasks.core.quality import TableCounts
from logistics_pipeline.tasks.core.runner import outputs_current, run_stream_orders
from logistics_pipeline.tasks.core.silver import SILVER_TABLES
from logistics_pipeline.tasks.local.bronze import new_bronze_columns
from logistics_pipeline.tasks.local.lake import DamagedTableError, Lake, repair, row_count, table_exists
from logistics_pipeline.tasks.local.store import DeltaStore, bronze_fingerprint
from logistics_pipeline.tasks.orchestration.assets import table_asset
from logistics_pipeline.tasks.orchestration.lock import lake_lock
from logistics_pipeline.tasks.orchestration.progress import Progress
from logistics_pipeline.tasks.orchestration.quality import artifact_rows, check_quality_settings, enforce_thresholds, record_silver_quality
from logistics_pipeline.tasks.orchestration.steps import build_silver_table, build_stream_orders
from logistics_pipeline.tasks.settings import QualitySettings, load_settings

PARALLEL_TABLES = 2
"""Silver tables built at once. polars already spreads one table over every core; a second
keeps the cores busy while the first writes, and more would only add memory (every table
being built holds up to a bucket of its rows: ``tasks.local.store``)."""


@flow(name="silver-layer", task_runner=ThreadPoolTaskRunner(max_workers=PARALLEL_TABLES))
def silver_layer(
    lake: Annotated[str | None, Field(description="Lake folder (default: LOGISTICS_LAKE or ./lake).")] = None,
    engine: Annotated[Literal["local", "databricks"] | None, Field(description="local (in-process) or databricks (a job run); default LOGISTICS_ENGINE.")] = None,
    full_refresh: Annotated[bool, Field(description="Rebuild every silver table from bronze, even when its input has not changed.")] = False,
) -> list[TableCounts]:
    """Build the silver tables (and stream_orders) from bronze; returns the counts per table.

    Args:
        lake: Lake folder (default: LOGISTICS_LAKE or ./lake).
        engine: local (in-process) or databricks (a job run); default LOGISTICS_ENGINE.
        full_refresh: Rebuild every silver table from bronze, even when its input has not changed.
    """
    settings = load_settings(lake=lake, engine=engine)
    check_quality_settings(settings.quality)
    run_at = datetime.now(timezone.utc)  # the time of this run's history versions and quality results
    if settings.engine == "databricks":
        # Imported here: databricks-sdk takes over a second to import, and only this engine needs it.
        from logistics_pipeline.tasks.databricks.jobs import run_on_databricks
        from logistics_pipeline.tasks.databricks.output import silver_counts

        counts = silver_counts(run_on_databricks("silver", settings.databricks))
        publish_silver(counts, settings.quality)
        return counts
    with lake_lock(settings.lake), DeltaStore(Lake(settings.lake)) as store:
        lake_ = store.lake
        logger = get_run_logger()

        drift = new_bronze_columns(lake_)
        for finding in drift:
            logger.warning(finding.message)
        if drift:
            create_markdown_artifact(key="schema-drift", markdown=drift_markdown(drift), description="Source columns bronze kept and silver does not use")

        futures = {}
        for table in SILVER_TABLES:
            repair_outputs(lake_, table.name, f"bronze {table.bronze}")
            target = lake_.uri("silver", table.name)
            fingerprint = bronze_fingerprint(lake_.uri("bronze", table.bronze))
            stale = full_refresh or not outputs_current(store, table.name, fingerprint)
            build = build_silver_table.with_options(
                assets=[table_asset(settings.lake, "silver", table.name), table_asset(settings.lake, "quarantine", table.name)],
                asset_deps=[table_asset(settings.lake, "bronze", table.bronze)],
                refresh_cache=stale,
            )
            futures[build.submit(table, lake_, target_uri=target, fingerprint=fingerprint, force=full_refresh, run_at=run_at)] = table
        progress = silver_progress(lake_)
        for future in as_completed(futures):  # a table stopped by schema drift fails the layer, after the other tables are built
            progress.advance(row_count(lake_.uri("bronze", futures[future].bronze)), note=f"{futures[future].name} done")
        counts, failure = [], None
        for future in futures:
            try:
                counts.append(future.result())
            except Exception as error:  # noqa: BLE001 - raised below, after the tables that were built record their results
                failure = failure or error
        if failure is not None:
            record_silver_quality(store, counts, run_at)
            raise failure

        repair_outputs(lake_, STREAM_ORDERS, f"bronze {KAFKA_ORDERS}")
        stream_bronze = lake_.uri("bronze", KAFKA_ORDERS)
        if not table_exists(stream_bronze):
            run_stream_orders(store)  # no stream yet: an empty stream_orders, which gold reads
        else:
            stream = bronze_fingerprint(stream_bronze)
            target = lake_.uri("silver", STREAM_ORDERS)
            stale = full_refresh or not outputs_current(store, STREAM_ORDERS, stream)
            build = build_stream_orders.with_options(
                assets=[table_asset(settings.lake, "silver", STREAM_ORDERS), table_asset(settings.lake, "quarantine", STREAM_ORDERS)],
                asset_deps=[table_asset(settings.lake, "bronze", KAFKA_ORDERS)],
                refresh_cache=stale,
            )
            counts.append(build(lake_, target_uri=target, fingerprint=stream, force=full_refresh))
        progress.close()

        record_silver_quality(store, counts, run_at)
        publish_silver(counts, settings.quality)
        return counts


def publish_silver(counts: list[TableCounts], thresholds: QualitySettings) -> None:
    """The counts per table in the log and the silver-layer artifact (with what each rule
    quarantined), whichever engine ran the layer; then the quality thresholds, which may fail it."""
    for c in counts:
        get_run_logger().info(
            "silver %s: %d in = %d out + %d quarantined + %d merged duplicates",
            c.table, c.rows_in, c.rows_out, c.quarantined, c.merged_duplicates,
        )
    create_table_artifact(
        key="silver-layer",
        table=artifact_rows(counts),
        description="Per silver table: rows in (bronze) = rows out + quarantined + merged duplicates; rows (and share of rows in) each rule quarantined.",
    )
    enforce_thresholds(counts, thresholds)


def silver_progress(lake_: Lake) -> Progress:
    """Silver's progress in bronze rows, the work a table's build grows with (a damaged
    kafka_orders counts none here: its own check names it)."""
    total = sum(row_count(lake_.uri("bronze", table.bronze)) for table in SILVER_TABLES)
    with suppress(DamagedTableError):
        total += row_count(lake_.uri("bronze", KAFKA_ORDERS))
    return Progress("silver-progress", "silver", "bronze rows", total=total, description="Bronze rows built into silver and quarantine")


def repair_outputs(lake_: Lake, table: str, upstream: str) -> None:
    """A silver or quarantine table that cannot be trusted is set aside, so it is rebuilt."""
    for layer in ("silver", "quarantine"):
        warning = repair(lake_.uri(layer, table), upstream)
        if warning:
            get_run_logger().warning(warning)
