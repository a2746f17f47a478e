"""Delta Lake I/O: where each table lives and how it is read and written atomically.

Every write records what it was computed from (``logistics.input``) in the commit's
metadata, so a rerun can tell cheaply whether a table is already up to date.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import polars as pl
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake

Layer = Literal["bronze", "silver", "quarantine"]
INPUT_KEY = "logistics.input"
TARGET_FILE_BYTES = 32 << 20
"""Data files of a streamed overwrite are closed at about this size (delta-rs' default is 100 MiB)."""


@dataclass(frozen=True)
class Lake:
    """A lake root (folder or object-store URI) with one Delta table per layer/table."""

    root: str

    def uri(self, layer: Layer, table: str) -> str:
        return f"{self.root}/{layer}/{table}"

    @property
    def gold_path(self) -> str:
        return f"{self.root}/gold.duckdb"


def table_exists(uri: str) -> bool:
    return DeltaTable.is_deltatable(uri)


def table_version(uri: str) -> int | None:
    """Current Delta version, or None when the table does not exist yet."""
    return DeltaTable(uri).version() if table_exists(uri) else None


def recorded_input(uri: str) -> str | None:
    """The input fingerprint stored with the table's latest commit, if any."""
    if not table_exists(uri):
        return None
    for commit in DeltaTable(uri).history(limit=1):
        value = commit.get(INPUT_KEY)
        return None if value is None else str(value)
    return None


def row_count(uri: str) -> int:
    """Rows in the table's current version (0 when it does not exist), from the Delta log's statistics."""
    return DeltaTable(uri).count() if table_exists(uri) else 0


def overwrite(uri: str, data: pl.DataFrame, *, input_fingerprint: str, metadata: dict[str, Any] | None = None) -> None:
    """Replace the table's content in one Delta commit (readers never see a partial table)."""
    _overwrite(uri, data, input_fingerprint, metadata)


def overwrite_batches(
    uri: str, schema: pa.Schema, batches: Iterable[pa.RecordBatch], *, input_fingerprint: str, metadata: dict[str, Any] | None = None,
) -> None:
    """Replace the table's content with a stream of batches, still in one Delta commit: delta-rs
    pulls the batches as it writes them, so memory holds a few batches and one open file, not
    the table. An error while producing a batch leaves the table as it was and is raised as is
    (not as the DeltaError wrapping it)."""
    failure: list[BaseException] = []

    def watched() -> Iterator[pa.RecordBatch]:
        try:
            yield from batches
        except BaseException as error:
            failure.append(error)
            raise

    try:
        _overwrite(uri, pa.RecordBatchReader.from_batches(schema, watched()), input_fingerprint, metadata, target_file_size=TARGET_FILE_BYTES)
    except Exception:
        if failure:
            raise failure[0] from None
        raise


def _overwrite(uri: str, data: pl.DataFrame | pa.RecordBatchReader, input_fingerprint: str, metadata: dict[str, Any] | None, **options: Any) -> None:
    custom = {INPUT_KEY: input_fingerprint, **{k: json.dumps(v) if not isinstance(v, str) else v for k, v in (metadata or {}).items()}}
    write_deltalake(
        uri,
        data,
        mode="overwrite",
        schema_mode="overwrite",
        commit_properties=CommitProperties(custom_metadata=custom),
        **options,
    )
