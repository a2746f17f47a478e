"""lake-maintenance: compact the small files micro-batches leave, vacuum files older than the
retention, and checkpoint every bronze, silver, quarantine and history table and the quality
results.

Safe to run while the pipeline runs. The append-only tables (the stream, the quality
results) are maintained at once (a compaction and concurrent appends do not conflict in
Delta); the tables the pipeline overwrites are maintained only while holding the lake lock,
and skipped when a pipeline run holds it (they are rewritten whole on every change, so they
hardly accumulate small files).
What was done is a table artifact: files before and after, per table.
"""

from __future__ import annotations

from typing import Annotated

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from logistics_pipeline.tasks.local.lake import Lake
from logistics_pipeline.tasks.local.maintenance import (
    UNLOCKED_MIN_RETENTION_HOURS,
    MaintenanceSettings,
    TableMaintenance,
    TableRef,
    check_retention,
    lake_tables,
    maintain_table,
    skipped,
)
from logistics_pipeline.tasks.orchestration.lock import LakeLockTimeout, describe, lake_lock, read_holder
from logistics_pipeline.tasks.settings import load_settings


@task(task_run_name="maintain-{ref.layer}-{ref.name}", cache_policy=NO_CACHE)
def maintain(ref: TableRef, settings: MaintenanceSettings, compact: bool = True) -> TableMaintenance:
    """Compact, vacuum and checkpoint one Delta table."""
    result = maintain_table(ref, settings, compact=compact)
    get_run_logger().info(
        "%s: %s -> %s current files (%s -> %s on disk), %d vacuumed%s",
        ref.label, result.files_before, result.files_after, result.files_on_disk_before, result.files_on_disk_after,
        result.vacuumed, f"; {'; '.join(result.notes)}" if result.notes else "",
    )
    return result


@flow(name="lake-maintenance")
def lake_maintenance(
    lake: Annotated[str | None, Field(description="Lake folder or URI (default: LOGISTICS_LAKE or ./lake).")] = None,
    retention_hours: Annotated[int | None, Field(ge=0, description="Keep files removed less than this many hours ago (default LOGISTICS_MAINTENANCE_RETENTION_HOURS, 168).")] = None,
    enforce_retention_duration: Annotated[bool | None, Field(description="Refuse a retention under the table's minimum (168 h); false allows e.g. 0 in tests.")] = None,
    compact: Annotated[bool, Field(description="Compact small files (optimize).")] = True,
    lock_timeout_seconds: Annotated[float | None, Field(ge=0, description="Wait this long for a running pipeline before skipping the overwritten tables.")] = None,
) -> list[dict]:
    """Compact, vacuum and checkpoint every Delta table of the lake; returns one row per table.

    Args:
        lake: Lake folder or URI (default: LOGISTICS_LAKE or ./lake).
        retention_hours: Keep files removed less than this many hours ago (default LOGISTICS_MAINTENANCE_RETENTION_HOURS, 168).
        enforce_retention_duration: Refuse a retention under the table's minimum (168 h); false allows e.g. 0 in tests.
        compact: Compact small files (optimize).
        lock_timeout_seconds: Wait this long for a running pipeline before skipping the overwritten tables.
    """
    overrides = {
        "retention_hours": retention_hours,
        "enforce_retention_duration": enforce_retention_duration,
        "lock_timeout_seconds": lock_timeout_seconds,
    }
    settings = load_settings().maintenance.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    check_retention(settings)
    lake_ = Lake(load_settings(lake=lake).lake)
    logger = get_run_logger()
    tables = lake_tables(lake_)
    unlocked_ok = settings.retention_hours >= UNLOCKED_MIN_RETENTION_HOURS
    free = [t for t in tables if t.append_only and unlocked_ok]
    locked = [t for t in tables if t not in free]
    logger.info(
        "maintaining %d tables of %s (retention %d h): %d at once, %d under the lake lock",
        len(tables), lake_.root, settings.retention_hours, len(free), len(locked),
    )

    results = [maintain(ref, settings, compact=compact) for ref in free]
    if locked:
        try:
            with lake_lock(lake_.root, timeout_s=settings.lock_timeout_seconds):
                results += [maintain(ref, settings, compact=compact) for ref in locked]
        except LakeLockTimeout:
            reason = f"the lake lock is held by {describe(read_holder(lake_.root))}; run maintenance again when it is free"
            logger.warning("skipped %d overwritten tables: %s", len(locked), reason)
            results += [skipped(ref, reason) for ref in locked]

    rows = [r.row() for r in results]
    create_table_artifact(
        key="lake-maintenance",
        table=rows,
        description="Per Delta table: current files and data files on disk before/after compaction and vacuum.",
    )
    return rows
