"""Delta table maintenance: compact small files, vacuum old ones, checkpoint the log.

Micro-batches leave one small file per batch in ``bronze/kafka_orders``; every overwrite of
a bronze/silver/quarantine table leaves the previous version's files behind. Per table:

1. **compact** (``optimize.compact``): rewrite the current small files into few large ones.
   The commit removes and adds files with ``dataChange=false``: readers see the same rows.
2. **vacuum** (``vacuum(full=True)``): delete files that no version within the retention
   needs (removed more than ``retention_hours`` ago), and files no commit refers to (left by
   a killed writer) once they are older than the retention. Time travel to a version whose
   files are gone fails; versions whose files were removed within the retention still read.
3. **checkpoint** the log and delete log files past ``delta.logRetentionDuration`` (30 days).

Safe while the pipeline runs, because of what was verified against delta-rs
(tests/reliability/test_maintenance.py):

- An append that commits during a compaction does not conflict with it: the compaction
  commits on top (rows neither lost nor duplicated) and the appends' application
  transactions (the stream's offsets) stay in the log, so exactly-once still holds.
- An *overwrite* that commits during a compaction makes the compaction fail (harmless), but
  an overwrite that started before a compaction and commits after it succeeds and keeps the
  compacted file: the old rows come back. Every table but ``kafka_orders`` is overwritten by
  the pipeline, so those tables are maintained only while holding the lake lock
  (:mod:`tasks.orchestration.lock`); when a run holds it they are skipped, not waited for.
- Vacuum never deletes a file younger than the retention, so files an in-flight write has
  not committed yet are safe while ``retention_hours`` is longer than any write (a retention
  under :data:`UNLOCKED_MIN_RETENTION_HOURS` is applied under the lake lock only).

Maintenance commits carry the table's ``logistics.*`` commit metadata forward, so a rerun
still sees which input a table was built from and does not rebuild it for nothing.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deltalake import CommitProperties, DeltaTable
from deltalake.exceptions import CommitFailedError, DeltaError

from logistics_pipeline.tasks.errors import PipelineError, one_line
from logistics_pipeline.tasks.local.lake import Lake, commit_history, table_exists
from logistics_pipeline.tasks.settings import MaintenanceSettings

LAYERS = ("bronze", "silver", "quarantine", "history", "quality")
APPEND_ONLY = frozenset({("bronze", "kafka_orders"), ("quality", "silver")})
"""Tables the pipeline only ever appends to; every other table is overwritten whole."""
UNLOCKED_MIN_RETENTION_HOURS = 1
DEFAULT_MIN_RETENTION_HOURS = 168  # delta.deletedFileRetentionDuration unless a table sets its own
CARRIED_METADATA_PREFIX = "logistics."
NOT_CARRIED = frozenset({"logistics.offsets"})  # describes one batch, not the table


def check_retention(settings: MaintenanceSettings) -> None:
    """Refuse a too-short retention before any table is touched (a table may still set a longer minimum)."""
    if settings.enforce_retention_duration and settings.retention_hours < DEFAULT_MIN_RETENTION_HOURS:
        raise PipelineError(
            f"a vacuum retention of {settings.retention_hours} h is under the tables' minimum of {DEFAULT_MIN_RETENTION_HOURS} h: "
            "time travel and in-flight writes need it; allow it explicitly (enforce_retention_duration=false; CLI: --allow-short-retention)"
        )


@dataclass(frozen=True)
class TableRef:
    layer: str
    name: str
    uri: str

    @property
    def label(self) -> str:
        return f"{self.layer}/{self.name}"

    @property
    def append_only(self) -> bool:
        return (self.layer, self.name) in APPEND_ONLY


@dataclass
class TableMaintenance:
    """What maintenance did to one table (one row of the report)."""

    table: str
    mode: str
    version_before: int | None = None
    version_after: int | None = None
    files_before: int | None = None  # files of the current version
    files_after: int | None = None
    files_on_disk_before: int | None = None  # every data file in the folder (local lakes)
    files_on_disk_after: int | None = None
    compacted_removed: int = 0
    compacted_added: int = 0
    vacuumed: int = 0
    checkpoint_version: int | None = None
    notes: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        row = asdict(self)
        row["notes"] = "; ".join(self.notes)
        return row


def lake_tables(lake_: Lake) -> list[TableRef]:
    """Every Delta table of the lake: the contract's tables, plus any other one found in a local lake."""
    from logistics_pipeline.tasks.core.contract import KAFKA_ORDERS, SOURCES, STREAM_ORDERS
    from logistics_pipeline.tasks.core.silver import SILVER_TABLES

    names = {
        "bronze": [source.table for source in SOURCES] + [KAFKA_ORDERS],
        "silver": [table.name for table in SILVER_TABLES] + [STREAM_ORDERS],
        "quarantine": [table.name for table in SILVER_TABLES] + [STREAM_ORDERS],
        "history": [table.name for table in SILVER_TABLES if table.keeps_history],
        "quality": ["silver"],  # every silver run appends its results
    }
    if "://" not in lake_.root:
        for layer in LAYERS:
            folder = Path(lake_.root) / layer
            if folder.is_dir():
                names[layer] += sorted(path.name for path in folder.iterdir() if (path / "_delta_log").is_dir())
    tables: list[TableRef] = []
    for layer in LAYERS:
        for name in dict.fromkeys(names[layer]):  # unique, in order
            uri = lake_.uri(layer, name)  # type: ignore[arg-type]
            if table_exists(uri):
                tables.append(TableRef(layer, name, uri))
    return tables


def data_files_on_disk(uri: str) -> int | None:
    """Parquet files under a local table folder (current, old and orphaned); None on object stores."""
    if "://" in uri and not uri.startswith("file://"):
        return None
    root = Path(uri.removeprefix("file://"))
    count = 0
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != "_delta_log"]
        count += sum(1 for name in files if name.endswith(".parquet"))
    return count


def carried_metadata(table: DeltaTable) -> dict[str, str]:
    """The table's ``logistics.*`` commit metadata (what it was built from), to repeat on maintenance commits."""
    latest = commit_history(table, limit=1)
    if not latest:
        return {}
    return {
        key: value if isinstance(value, str) else str(value)
        for key, value in latest[0].items()
        if key.startswith(CARRIED_METADATA_PREFIX) and key not in NOT_CARRIED
    }


def maintain_table(
    ref: TableRef,
    settings: MaintenanceSettings,
    *,
    compact: bool = True,
    vacuum: bool = True,
    checkpoint: bool = True,
) -> TableMaintenance:
    """Compact, vacuum and checkpoint one table. A compaction that loses a commit race to a
    concurrent writer is reported in ``notes`` and left for the next run, never retried blindly."""
    result = TableMaintenance(table=ref.label, mode="append" if ref.append_only else "overwrite")
    table = DeltaTable(ref.uri)
    result.version_before = table.version()
    result.files_before = len(table.file_uris())
    result.files_on_disk_before = data_files_on_disk(ref.uri)
    carry = CommitProperties(custom_metadata=carried_metadata(table)) if not ref.append_only else None

    if compact:
        try:
            metrics = table.optimize.compact(target_size=settings.target_file_size, commit_properties=carry)
            result.compacted_removed = int(metrics.get("numFilesRemoved", 0))
            result.compacted_added = int(metrics.get("numFilesAdded", 0))
        except CommitFailedError as error:
            result.notes.append(f"compaction skipped: a concurrent write won ({short(error)})")
        table = DeltaTable(ref.uri)

    if vacuum:
        try:
            removed = table.vacuum(
                retention_hours=settings.retention_hours,
                dry_run=False,
                enforce_retention_duration=settings.enforce_retention_duration,
                full=True,
                commit_properties=carry,
            )
        except DeltaError as error:
            if "retention" not in str(error).lower():
                raise
            raise PipelineError(
                f"{ref.label}: vacuum refused a retention of {settings.retention_hours} h ({short(error)}); "
                "keep at least the table's delta.deletedFileRetentionDuration or allow it (enforce_retention_duration=false; "
                "CLI: --allow-short-retention)"
            ) from None
        result.vacuumed = len(removed)
        table = DeltaTable(ref.uri)

    if checkpoint:
        table.create_checkpoint()
        table.cleanup_metadata()
        result.checkpoint_version = table.version()

    table = DeltaTable(ref.uri)
    result.version_after = table.version()
    result.files_after = len(table.file_uris())
    result.files_on_disk_after = data_files_on_disk(ref.uri)
    return result


def skipped(ref: TableRef, reason: str) -> TableMaintenance:
    table = DeltaTable(ref.uri)
    files = len(table.file_uris())
    on_disk = data_files_on_disk(ref.uri)
    return TableMaintenance(
        table=ref.label,
        mode="append" if ref.append_only else "overwrite",
        version_before=table.version(),
        version_after=table.version(),
        files_before=files,
        files_after=files,
        files_on_disk_before=on_disk,
        files_on_disk_after=on_disk,
        notes=[f"skipped: {reason}"],
    )


def short(error: BaseException) -> str:
    return one_line(error)[:300]
