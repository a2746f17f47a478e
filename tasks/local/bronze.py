"""Bronze on the local engine: each checked CSV export streamed into its Delta table in one
commit (``tasks.core.csv_source`` reads it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow as pa

from logistics_pipeline.tasks.core.contract import BRONZE_ERROR, SOURCES, SourceFile
from logistics_pipeline.tasks.core.csv_source import (
    METADATA_COLUMNS,
    CsvFingerprint,
    arrow_schema,
    read_csv_chunks,
)
from logistics_pipeline.tasks.core.drift import DriftFinding
from logistics_pipeline.tasks.local import lake


def ingest_csv(path: Path, source: SourceFile, table_uri: str, fingerprint: CsvFingerprint) -> int:
    """Write the file to its bronze table unless that exact content is already there; returns its rows.

    The chunks stream into one Delta commit: a reader sees the old table or the whole new one."""
    if lake.recorded_input(table_uri) == fingerprint.sha256:
        return lake.row_count(table_uri)
    schema = arrow_schema(fingerprint.header)
    rows = 0

    def batches() -> Iterator[pa.RecordBatch]:
        nonlocal rows
        for frame in read_csv_chunks(path, fingerprint, source.relative_path):
            rows += frame.height
            yield from frame.to_arrow(compat_level=pl.CompatLevel.oldest()).cast(schema).to_batches()

    lake.overwrite_batches(
        table_uri,
        schema,
        batches(),
        input_fingerprint=fingerprint.sha256,
        metadata={"logistics.source": source.relative_path, "logistics.batch_id": fingerprint.batch_id},
    )
    return rows


def new_bronze_columns(lake_: lake.Lake) -> list[DriftFinding]:
    """Columns a bronze table holds beyond its source contract (read from the Delta schema, no data)."""
    known_extra = {*METADATA_COLUMNS, BRONZE_ERROR}
    findings = []
    for source in SOURCES:
        table = lake.open_table(lake_.uri("bronze", source.table))
        if table is None:
            continue
        for field in table.schema().fields:
            if field.name not in source.columns and field.name not in known_extra:
                findings.append(DriftFinding(source.table, source.relative_path, field.name, "new column"))
    return findings
