"""silver-layer: typed, cleansed, deduplicated tables; rejected rows go to quarantine.

For every table: rows in = rows out + quarantined + merged duplicates, reported as a
table artifact. A table whose bronze input has not changed is not rebuilt.
"""

from __future__ import annotations

from typing import Annotated, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from pydantic import Field

from tasks.caching import is_stale
from tasks.databricks import run_on_databricks
from tasks.lake import Lake
from tasks.quality import TableCounts
from tasks.settings import load_settings
from tasks.silver import SILVER_TABLES
from tasks.silver_local import bronze_fingerprint, build_silver_table, build_stream_orders, stream_fingerprint
from tasks.stream_silver import STREAM_ORDERS, ensure_stream_orders


@flow(name="silver-layer")
def silver_layer(
    lake: Annotated[str | None, Field(description="Lake folder (default: LOGISTICS_LAKE or ./lake).")] = None,
    engine: Annotated[Literal["local", "databricks"] | None, Field(description="local (in-process) or databricks (a job run); default LOGISTICS_ENGINE.")] = None,
) -> list[TableCounts]:
    """Build the silver tables (and stream_orders) from bronze; returns the counts per table."""
    settings = load_settings(lake=lake, engine=engine)
    if settings.engine == "databricks":
        run_on_databricks("silver", settings.databricks)
        return []
    lake_ = Lake(settings.lake)
    logger = get_run_logger()

    futures = []
    for table in SILVER_TABLES:
        target = lake_.uri("silver", table.name)
        fingerprint = bronze_fingerprint(lake_.uri("bronze", table.bronze))
        build = build_silver_table.with_options(refresh_cache=is_stale(target, fingerprint))
        futures.append(build.submit(table, lake_, target_uri=target, fingerprint=fingerprint))
    counts = [future.result() for future in futures]

    stream = stream_fingerprint(lake_)
    if stream is None:
        ensure_stream_orders(lake_)
    else:
        target = lake_.uri("silver", STREAM_ORDERS)
        build = build_stream_orders.with_options(refresh_cache=is_stale(target, stream))
        counts.append(build(lake_, target_uri=target, fingerprint=stream))

    for c in counts:
        logger.info(
            "silver %s: %d in = %d out + %d quarantined + %d merged duplicates",
            c.table, c.rows_in, c.rows_out, c.quarantined, c.merged_duplicates,
        )
    create_table_artifact(
        key="silver-layer",
        table=[c.__dict__ for c in counts],
        description="Per silver table: rows in (bronze) = rows out + quarantined + merged duplicates.",
    )
    return counts
