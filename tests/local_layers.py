"""The local engine's bronze and silver tables of the CSV exports, built by plain function
calls (no flow, no Prefect server): what the Spark tests compare against or build on. And,
for silver written by hand, what a silver run writes besides (history and quality results),
which gold reads."""

from __future__ import annotations

from datetime import datetime, timezone
from collections.abc import Iterable
from pathlib import Path

from logistics_pipeline.tasks.core.contract import SOURCES
from logistics_pipeline.tasks.core.csv_source import fingerprint_csv
from logistics_pipeline.tasks.core.quality import TableCounts
from logistics_pipeline.tasks.core.quality_log import QUALITY_LAYER, QUALITY_TABLE, quality_rows
from logistics_pipeline.tasks.core.runner import history_current, run_silver_table, update_history
from logistics_pipeline.tasks.core.silver import SILVER_TABLES
from logistics_pipeline.tasks.local.bronze import ingest_csv
from logistics_pipeline.tasks.local.lake import Lake
from logistics_pipeline.tasks.local.store import DeltaStore


def build_local_layers(sources: Path, lake: Lake, run_at: datetime | None = None) -> list[TableCounts]:
    """Bronze for every source file, then every silver table (not the stream), as one silver
    run at ``run_at`` (default now); returns the tables' counts."""
    for source in SOURCES:
        path = source.path(sources)
        ingest_csv(path, source, lake.uri("bronze", source.table), fingerprint_csv(path, source))
    run_at = run_at or datetime.now(timezone.utc)
    return [run_silver_table(DeltaStore(lake), table, run_at=run_at) for table in SILVER_TABLES]


def write_history_and_quality(lake: Lake, counts: Iterable[TableCounts] = (), run_at: datetime | None = None, run_id: str = "test-run") -> None:
    """Each dimension source's history merged from its silver table as it is, and the run's
    quality results (``counts``; without any, the quality table is created empty)."""
    store, run_at = DeltaStore(lake), run_at or datetime.now(timezone.utc)
    for table in SILVER_TABLES:
        if table.keeps_history and not history_current(store, table.name):
            update_history(store, table, run_at)
    store.append(QUALITY_LAYER, QUALITY_TABLE, quality_rows(counts, run_id, run_at, "local"))
