"""The lake tables gold reads (silver, history, quality) as views of their current Parquet
files, in the DuckDB file a dbt command runs on, for the length of that command.

Copying them into gold.duckdb, as dbt-duckdb's source plugins do, is a write of every silver
row: at scale 100 the sales took 1.6 s to copy and 0.2 s to scan as Parquet, and the copies
about 5 s of the gold build in all (15 s at scale 300). A view reads the files where they are.
It names the data files of this moment, which a later vacuum deletes, so the views are dropped
when the command ends: gold.duckdb holds the gold models and the quarantine, never a view of
lake files.

The sources are declared with ``save_mode: ignore`` (models/sources.yml): dbt-duckdb's ``lake``
plugin copies a table only when it has no view here, that is a table DuckDB's Parquet reader
cannot read as a whole (``parquet_files``) or whose files it cannot open (the plugin's copy then
fails inside dbt, which names the table), or any table in a hand-run ``dbt build``; the
project's on-run-end hook drops those copies too, so the next command reads silver again.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import duckdb
from deltalake import DeltaTable, Schema

from logistics_pipeline.tasks.core.contract import STREAM_ORDERS
from logistics_pipeline.tasks.core.quality_log import QUALITY_LAYER, QUALITY_TABLE
from logistics_pipeline.tasks.core.silver import SILVER_TABLES
from logistics_pipeline.tasks.local.lake import Lake, data_file_path, is_local, open_table

SILVER_INPUTS = [*(t.name for t in SILVER_TABLES), STREAM_ORDERS]
HISTORY_INPUTS = [t.name for t in SILVER_TABLES if t.keeps_history]
LAKE_INPUTS = [*(("silver", t) for t in SILVER_INPUTS), *(("history", t) for t in HISTORY_INPUTS), (QUALITY_LAYER, QUALITY_TABLE)]
"""Every lake table gold reads, as (layer, table): the layer is also its schema in gold.duckdb."""

LAKE_SCHEMAS = tuple(dict.fromkeys(layer for layer, _ in LAKE_INPUTS))

_GLOB_CHARACTERS = frozenset("*?[]{}")


@contextmanager
def lake_views(gold_path: str, lake: str, inputs: Iterable[tuple[str, str]] = LAKE_INPUTS) -> Iterator[None]:
    """Views ``<layer>.<table>`` of the lake's tables in ``gold_path`` for the block, dropped after it."""
    lake_ = Lake(lake)
    with duckdb.connect(gold_path) as connection:
        for layer, table in inputs:
            uri = lake_.uri(layer, table)
            delta_table = open_table(uri)
            try:
                query = None if delta_table is None else parquet_query(connection, uri, delta_table)
            except duckdb.Error:  # a data file DuckDB cannot open: left to the plugin, whose error dbt reports
                query = None
            if query is not None:
                connection.execute(f'create schema if not exists "{layer}"')
                connection.execute(f'create or replace view "{layer}"."{table}" as {query}')
    try:
        yield
    finally:
        drop_lake_schemas(gold_path)


def drop_lake_schemas(gold_path: str) -> None:
    with duckdb.connect(gold_path) as connection:
        for schema in LAKE_SCHEMAS:
            connection.execute(f'drop schema if exists "{schema}" cascade')


def parquet_query(connection: duckdb.DuckDBPyConnection, uri: str, table: DeltaTable) -> str | None:
    """A select of the table's columns from its data files (of none when the table is empty:
    ``empty_query``), or None when DuckDB's Parquet reader cannot read it as the whole table
    (``parquet_files``) or no data file has one of its columns yet."""
    file_uris = table.file_uris()
    if not file_uris:
        return empty_query(table.schema())
    files = parquet_files(uri, table, file_uris)
    if files is None:
        return None
    scan = f"read_parquet([{', '.join(_literal(path) for path in files)}], union_by_name = true)"
    columns = [field.name for field in table.schema().fields]
    if not set(columns) <= {row[0] for row in connection.execute(f"describe select * from {scan}").fetchall()}:
        return None
    return f"select {', '.join(_identifier(name) for name in columns)} from {scan}"


DUCKDB_TYPES = {
    "string": "VARCHAR", "long": "BIGINT", "integer": "INTEGER", "short": "SMALLINT", "byte": "TINYINT", "float": "FLOAT",
    "double": "DOUBLE", "boolean": "BOOLEAN", "binary": "BLOB", "date": "DATE", "timestamp": "TIMESTAMPTZ", "timestamp_ntz": "TIMESTAMP",
}
"""Delta's primitive types as DuckDB reads them from the lake's Parquet files (a Delta
``timestamp`` is an instant: Parquet's UTC-adjusted timestamp, DuckDB's TIMESTAMPTZ)."""


def empty_query(schema: Schema) -> str | None:
    """A select of no rows with the columns and types of ``schema``, or None when one is not a
    primitive type. An empty table (most quarantine tables, the stream's before any order) needs
    no file and no Arrow: handing DuckDB an Arrow dataset imports pyarrow.dataset and pandas,
    0.4 s of a small gold build."""
    columns = []
    for field in schema.fields:
        name = getattr(field.type, "type", None)
        if not isinstance(name, str):
            return None
        duckdb_type = DUCKDB_TYPES.get(name) or (name.upper() if name.startswith("decimal(") else None)
        if duckdb_type is None:
            return None
        columns.append(f"cast(null as {duckdb_type}) as {_identifier(field.name)}")
    return f"select {', '.join(columns)} where false" if columns else None


def parquet_files(uri: str, table: DeltaTable, file_uris: list[str]) -> list[str] | None:
    """The local paths of the table's data files (``file_uris``) when they are the whole table, else None.

    The data files of a Delta table are the table when it has no partition columns and no
    reader features (deletion vectors, column mapping), which is how the lake writes every
    table; one outside the local disk, or a file name DuckDB would read as a glob pattern, is
    not read this way."""
    protocol = table.protocol()
    if not is_local(uri) or table.metadata().partition_columns or protocol.reader_features or protocol.min_reader_version > 1:
        return None
    files = [data_file_path(uri_) for uri_ in file_uris]
    if any(_GLOB_CHARACTERS & set(path) for path in files):
        return None
    return files


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
