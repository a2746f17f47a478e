"""Delta Lake I/O: where each table lives, how it is read and written atomically, and whether
it can still be trusted.

Every write records what it was computed from (``logistics.input``) in the commit's
metadata, so a rerun can tell cheaply whether a table is already up to date. What a table
is computed from is its input's *state*: the version, the table's id and the commit's time
(``table_state``), so a table reset by hand or recreated at a version number seen before is
not mistaken for the one recorded. ``table_problem`` tells a table whose log cannot be read,
whose data files are missing or whose log lost an add action; such a table is set aside and
rebuilt from its upstream (``set_aside``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

import polars as pl
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, WriterProperties, write_deltalake
from deltalake.exceptions import TableNotFoundError

from logistics_pipeline.tasks.core.contract import INPUT_KEY, LANDING_ORDERS
from logistics_pipeline.tasks.errors import PipelineError, first_line

Layer = Literal["bronze", "silver", "quarantine", "history", "quality"]
TARGET_FILE_BYTES = 32 << 20
"""Data files of a streamed overwrite are closed at about this size (delta-rs' default is 100 MiB)."""
ROW_GROUP_ROWS = 128 * 1024
"""Rows per Parquet row group of a streamed overwrite: a reader decodes a row group at once, and
delta-rs' default (about a million rows) made a streaming scan of bronze hold a gigabyte."""


@dataclass(frozen=True)
class Lake:
    """A lake root (folder or object-store URI) with one Delta table per layer/table."""

    root: str

    def uri(self, layer: Layer, table: str) -> str:
        return f"{self.root}/{layer}/{table}"

    @property
    def landing_orders(self) -> str:
        """The folder of order files (JSON lines) the stream uses without Kafka."""
        return f"{self.root}/{LANDING_ORDERS}"

    @property
    def gold_path(self) -> str:
        return f"{self.root}/gold.duckdb"


class DamagedTableError(PipelineError):
    """A Delta table that cannot be read or trusted; the message names it."""

    def __init__(self, uri: str, problem: str):
        super().__init__(f"Delta table {uri}: {problem}")
        self.uri = uri
        self.problem = problem


def open_table(uri: str) -> DeltaTable | None:
    """The table, or None when there is none; a log that cannot be read raises
    ``DamagedTableError`` naming the table (not a backtrace from delta-rs).

    No ``DeltaTable.is_deltatable`` first: delta-rs says "no table" itself, and a run opens
    tables about a hundred times (0.1 s of a no-op rerun at scale 30 went to the second look)."""
    try:
        return DeltaTable(uri)
    except TableNotFoundError:
        return None
    except Exception as error:  # noqa: BLE001 - any failure to read the log means the same to the user
        raise DamagedTableError(uri, f"its Delta log cannot be read ({first_line(error)})") from None


def read_table(uri: str, *, version: int | None = None, columns: list[str] | None = None) -> pl.DataFrame:
    """A table (at ``version``) as a polars frame, whatever characters the lake's path holds.

    polars opens a table's data files by the names delta-rs gives (``file_uris``), and for a
    local table those are percent-encoded paths without a scheme: under a folder named with
    a space, ``#``, ``?``, ``%`` or a non-ASCII letter they name files that do not exist.
    Such tables are read through delta-rs' own dataset (pyarrow), which decodes the names."""
    return pl.read_delta(uri, version=version, columns=columns, use_pyarrow=is_local(uri) and _encoded_by_delta_rs(uri))


def scan_table(uri: str, *, version: int | None = None) -> pl.LazyFrame:
    """A table (at ``version``) as a lazy polars scan, read file by file as a query needs it
    (``read_table`` holds the whole table); the same care for the lake's path.

    Under a path delta-rs percent-encodes, the data files are scanned by their decoded names:
    polars' pyarrow scan, ``read_table``'s way round, counts no rows when a query needs no
    column (``select(pl.len())`` gave 0). The project's tables have neither partitions nor
    deletion vectors, so the data files are the table."""
    if not (is_local(uri) and _encoded_by_delta_rs(uri)):
        return pl.scan_delta(uri, version=version)
    table = DeltaTable(uri, version=version)
    schema = pl.from_arrow(pa.schema(table.schema().to_arrow()).empty_table()).schema
    files = [data_file_path(file) for file in table.file_uris()]
    if not files:
        return pl.LazyFrame(schema=schema)
    return pl.scan_parquet(
        files, schema=schema, glob=False, missing_columns="insert", extra_columns="ignore", cast_options=pl.ScanCastOptions._default_iceberg()
    )


_PLAIN_PATH = re.compile(r"[A-Za-z0-9/._-]*")


def _encoded_by_delta_rs(path: str) -> bool:
    """Whether delta-rs may percent-encode this local path (anything but letters, digits and ``/._-``)."""
    return _PLAIN_PATH.fullmatch(path) is None


def data_file_path(file_uri: str) -> str:
    """The local path of a data file ``file_uris`` names (percent-encoded, see ``read_table``)."""
    return unquote(file_uri)


def commit_history(table: DeltaTable, limit: int | None = None) -> list[dict[str, Any]]:
    """The table's commits, latest first, as ``DeltaTable.history`` gives them.

    delta-rs returns no history at all for a local table under a path holding ``#`` or
    ``?`` (it reads the log through a URL, where they start a fragment or a query); such a
    table's commits are read from its log files, back to the oldest one still there."""
    commits = table.history(limit)
    if commits or table.version() < 0 or not table.table_uri.startswith("file://"):
        return commits
    log = Path(data_file_path(table.table_uri.removeprefix("file://"))) / "_delta_log"
    oldest = -1 if limit is None else max(table.version() - limit, -1)
    for version in range(table.version(), oldest, -1):
        path = log / f"{version:020d}.json"
        if not path.is_file():
            break
        for line in path.read_text().splitlines():
            action = json.loads(line) if line.strip() else {}
            if "commitInfo" in action:
                commits.append({**action["commitInfo"], "version": version})
    return commits


def table_exists(uri: str) -> bool:
    return open_table(uri) is not None


def table_version(uri: str) -> int | None:
    """Current Delta version, or None when the table does not exist yet."""
    table = open_table(uri)
    return None if table is None else table.version()


def table_state(uri: str) -> str | None:
    """What a table downstream was built from: ``<uri>@v<version>:<table id>:<commit time>``,
    or None when there is no table. The version alone repeats when a table is reset by hand
    or recreated; the id and the commit's time do not."""
    table = open_table(uri)
    return None if table is None else state_of(uri, table, commit_history(table, limit=1)[0])


def state_of(uri: str, table: DeltaTable, latest_commit: dict[str, Any]) -> str:
    return f"{uri}@v{table.version()}:{table.metadata().id}:{latest_commit.get('timestamp')}"


def recorded_input(uri: str) -> str | None:
    """The input fingerprint stored with the table's latest commit, if any."""
    table = open_table(uri)
    if table is None:
        return None
    for commit in commit_history(table, limit=1):
        value = commit.get(INPUT_KEY)
        return None if value is None else str(value)
    return None


def row_count(uri: str) -> int:
    """Rows in the table's current version (0 when it does not exist), from the Delta log's statistics."""
    table = open_table(uri)
    return 0 if table is None else table.count()


HISTORY_CHECKED = 50
"""Commits read back to the last full write when checking a table's row count."""
_ROW_NEUTRAL = {"OPTIMIZE", "VACUUM START", "VACUUM END"}


def rows_written(table: DeltaTable) -> int | None:
    """Rows the commits since the last full write added, as their commit info says (None when
    that cannot be told from the last ``HISTORY_CHECKED`` commits)."""
    total = 0
    history = commit_history(table, limit=HISTORY_CHECKED)
    for commit in history:
        operation = commit.get("operation")
        if operation in _ROW_NEUTRAL:
            continue
        metrics = commit.get("operationMetrics") or {}
        added = metrics.get("num_added_rows", metrics.get("numOutputRows"))
        if operation != "WRITE" or added is None:
            return None
        total += int(added)
        if (commit.get("operationParameters") or {}).get("mode") == "Overwrite":
            return total
    return total if history and history[-1].get("version") == 0 else None


def table_problem(uri: str) -> str | None:
    """Why the table cannot be trusted, or None: its log cannot be read, a data file it lists
    is missing (local lakes), or it holds other than the rows its writes added (an add action
    lost from the log reads as a smaller, even empty, table)."""
    try:
        table = open_table(uri)
    except DamagedTableError as error:
        return error.problem
    if table is None:
        return None
    if is_local(uri):
        missing = [path for path in map(data_file_path, table.file_uris()) if not os.path.isfile(path)]
        if missing:
            return f"{len(missing)} of its data files are missing (e.g. {Path(missing[0]).name})"
    expected = rows_written(table)
    if expected is not None and (rows := table.count()) != expected:
        return f"its log lists {rows} rows where its writes added {expected} (an add action is missing)"
    return None


def is_local(uri: str) -> bool:
    return "://" not in uri


def set_aside(uri: str, problem: str) -> str:
    """Move a damaged local table out of the way, into ``<lake>/_damaged/``, so that it is
    rebuilt; returns where it went. Object-store tables are not moved: raises, naming the table."""
    if not is_local(uri):
        raise DamagedTableError(uri, f"{problem}; delete or restore it, and run again")
    table = Path(uri)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    destination = table.parent.parent / "_damaged" / table.parent.name / f"{table.name}-{stamp}"
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(table), destination)
    return str(destination)


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
        _overwrite(
            uri, pa.RecordBatchReader.from_batches(schema, watched()), input_fingerprint, metadata,
            target_file_size=TARGET_FILE_BYTES, writer_properties=WriterProperties(max_row_group_size=ROW_GROUP_ROWS, compression="SNAPPY"),
        )
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


def append(uri: str, data: pl.DataFrame) -> None:
    """Add rows in one Delta commit (the table is created by the first)."""
    write_deltalake(uri, data, mode="append")


def repair(uri: str, rebuilt_from: str) -> str | None:
    """Set the table aside when it cannot be trusted, so that the caller rebuilds it from
    ``rebuilt_from``; returns the one-line warning to log, or None when the table is sound."""
    problem = table_problem(uri)
    if problem is None:
        return None
    where = set_aside(uri, problem)
    return f"Delta table {uri}: {problem}; moved to {where}, rebuilding it from {rebuilt_from}"
