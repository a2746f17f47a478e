"""The Prefect tasks the layer flows call: each wraps one step of the engine-neutral work,
with the caching and retries that step wants.

Bronze and silver tasks are cached on what they read: a file's content hash, or the state of
a bronze table (``tasks.orchestration.caching``).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from logistics_pipeline.tasks.core.contract import SourceFile
from logistics_pipeline.tasks.core.csv_source import CsvFingerprint, fingerprint_csv
from logistics_pipeline.tasks.core.quality import TableCounts
from logistics_pipeline.tasks.core.runner import run_silver_table, run_stream_orders
from logistics_pipeline.tasks.core.silver import SilverTable
from logistics_pipeline.tasks.errors import concerning
from logistics_pipeline.tasks.local.bronze import ingest_csv
from logistics_pipeline.tasks.local.lake import Lake
from logistics_pipeline.tasks.local.store import DeltaStore
from logistics_pipeline.tasks.local.stream import Batch, write_batch
from logistics_pipeline.tasks.orchestration.assets import materializes, record_on_assets
from logistics_pipeline.tasks.orchestration.caching import input_cache_key


@task(task_run_name="check-{source.table}")
def check_source(source: SourceFile, source_dir: Path) -> CsvFingerprint:
    """Refuse a missing, empty, non-UTF-8 or wrongly shaped file before anything is written."""
    return fingerprint_csv(source.path(source_dir), source)


@materializes(task_run_name="ingest-{source.table}", cache_key_fn=input_cache_key, persist_result=True)
def ingest_source(source: SourceFile, source_dir: Path, target_uri: str, fingerprint: str, checked: CsvFingerprint) -> int:
    """Land one checked CSV in its bronze table (cached on the file's content hash)."""
    with concerning(f"bronze {source.table}"):
        rows = ingest_csv(source.path(source_dir), source, target_uri, checked)
    record_on_assets({"rows": rows})
    return rows


@materializes(task_run_name="silver-{table.name}", cache_key_fn=input_cache_key, persist_result=True)
def build_silver_table(
    table: SilverTable, lake_: Lake, target_uri: str, fingerprint: str, force: bool = False, run_at: datetime | None = None,
) -> TableCounts:
    """Build one silver table and its quarantine, and its history as of ``run_at`` (cached on
    the state of its bronze input)."""
    with concerning(f"silver {table.name}"), DeltaStore(lake_) as store:
        counts = run_silver_table(store, table, force, run_at)
    record_on_assets(counts_metadata(counts))
    return counts


@materializes(task_run_name="silver-stream_orders", cache_key_fn=input_cache_key, persist_result=True)
def build_stream_orders(lake_: Lake, target_uri: str, fingerprint: str, force: bool = False) -> TableCounts | None:
    """Build silver stream_orders and its quarantine (cached on the state of its bronze input)."""
    with concerning("silver stream_orders"), DeltaStore(lake_) as store:
        counts = run_stream_orders(store, force)
    if counts is not None:
        record_on_assets(counts_metadata(counts))
    return counts


@materializes(cache_policy=NO_CACHE, task_run_name="stream-batch")
def write_stream_batch(target_uri: str, batch: Batch) -> int:
    """Append one batch and its end offsets in a single Delta commit (never per message)."""
    with concerning("bronze kafka_orders"):
        rows = write_batch(target_uri, batch)
    record_on_assets({"rows_appended": rows})
    return rows


def counts_metadata(counts: TableCounts) -> dict[str, int]:
    """What the silver and quarantine assets record about a build."""
    return {"rows_in": counts.rows_in, "rows_out": counts.rows_out, "quarantined": counts.quarantined, "merged_duplicates": counts.merged_duplicates}
