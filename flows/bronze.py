"""bronze-layer: land every CSV export as a Delta table of text columns.

All files are checked first, so one bad file stops the layer before anything is written.
Files whose content is already in the lake are not ingested again.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from tasks.bronze import check_source, ingest_source
from tasks.caching import is_stale
from tasks.lake import Lake
from tasks.settings import load_settings
from tasks.sources import SOURCES


@flow(name="bronze-layer")
def bronze_layer(source_dir: str | None = None, lake: str | None = None) -> dict[str, int]:
    """Ingest the six CRM/ERP CSV files into bronze; returns rows per bronze table."""
    settings = load_settings(source_dir=source_dir, lake=lake)
    lake_ = Lake(settings.lake)
    logger = get_run_logger()
    checked = {source.table: check_source(source, settings.source_dir) for source in SOURCES}

    rows: dict[str, int] = {}
    ingested: dict[str, bool] = {}
    for source in SOURCES:
        target = lake_.uri("bronze", source.table)
        fingerprint = checked[source.table].sha256
        ingested[source.table] = is_stale(target, fingerprint)
        ingest = ingest_source.with_options(refresh_cache=ingested[source.table])
        rows[source.table] = ingest(source, settings.source_dir, target_uri=target, fingerprint=fingerprint, checked=checked[source.table])
        logger.info("bronze %s: %d rows (%s)", source.table, rows[source.table], "ingested" if ingested[source.table] else "unchanged")

    create_table_artifact(
        key="bronze-layer",
        table=[{"table": table, "rows": rows[table], "ingested": ingested[table]} for table in rows],
        description="Rows per bronze table; `ingested` is false when the file's content was already in the lake.",
    )
    return rows
