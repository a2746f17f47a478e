"""The quarantine tables as a person reads them: which rows silver rejected, by which rule, from
which line of which file (CSV) or which message (stream), in which batch.

A quarantine table holds ``_rule``, then the row as received (``tasks.core.runner``): for a CSV
export the source columns as text plus bronze's ``_line``, ``_ingested_at``, ``_source``,
``_batch_id`` and ``_bronze_error``; for the stream the message ``value``, the index of the
order line a line rule rejected (``_line_index``), and where the message came from (``_source``:
the topic with ``partition`` and ``offset``, or the landing file with the line's 0-based index
in ``offset``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import polars as pl
import pyarrow as pa

from logistics_pipeline.tasks.core.contract import SOURCES_BY_TABLE, STREAM_ORDERS
from logistics_pipeline.tasks.core.quality import RULE_COLUMN
from logistics_pipeline.tasks.core.silver import MALFORMED_ROW, SILVER_BY_NAME, SILVER_TABLES
from logistics_pipeline.tasks.core.stream import STREAM_RULES
from logistics_pipeline.tasks.errors import PipelineError
from logistics_pipeline.tasks.local.lake import Lake, open_table, scan_table

QUARANTINE_TABLES: tuple[str, ...] = (*(table.name for table in SILVER_TABLES), STREAM_ORDERS)
BRONZE_METADATA = {
    "_line": pa.int64(),
    "_ingested_at": pa.timestamp("us", "UTC"),
    "_source": pa.string(),
    "_batch_id": pa.string(),
    "_bronze_error": pa.string(),
}
"""What bronze adds to a CSV row, in its order (``tasks.core.csv_source``)."""
STREAM_LAYOUT = {
    "value": pa.string(),
    "_line_index": pa.int64(),
    "key": pa.string(),
    "partition": pa.int32(),
    "offset": pa.int64(),
    "timestamp": pa.timestamp("us", "UTC"),
    "_source": pa.string(),
    "_batch_id": pa.string(),
    "_ingested_at": pa.timestamp("us", "UTC"),
}
"""The stream quarantine after ``_rule`` (``tasks.core.runner.run_stream_orders``)."""


def rule_names(table: str) -> tuple[str, ...]:
    """The rules that can quarantine a row of ``table``, in the order they are checked."""
    if table == STREAM_ORDERS:
        return tuple(rule.name for rule in STREAM_RULES)
    return (MALFORMED_ROW.name, *(rule.name for rule in SILVER_BY_NAME[table].rules))


def quarantine_schema(table: str) -> pa.Schema:
    """The columns and types of a quarantine table, as silver writes it."""
    if table == STREAM_ORDERS:
        columns = STREAM_LAYOUT
    else:
        columns = {**dict.fromkeys(SOURCES_BY_TABLE[SILVER_BY_NAME[table].bronze].columns, pa.string()), **BRONZE_METADATA}
    return pa.schema({RULE_COLUMN: pa.string(), **columns})


def empty_quarantine(table: str) -> pa.Table:
    """A quarantine table silver has not written yet (the stream's before any message arrived),
    as the empty table it stands for: no row was rejected."""
    return quarantine_schema(table).empty_table()


@dataclass(frozen=True)
class QuarantinedRow:
    """One rejected row: its table, the rule it broke, where it came from, its batch and the row as received."""

    table: str
    rule: str
    where: str
    batch: str | None
    received: str


@dataclass(frozen=True)
class Selection:
    """The rows that match, at most ``limit`` of them, and how many match in all."""

    rows: list[QuarantinedRow]
    matching: int


def check_filters(table: str | None, rule: str | None) -> None:
    """An unknown table or rule is a mistake, not an empty answer: say which names exist."""
    if table is not None and table not in QUARANTINE_TABLES:
        raise PipelineError(f"no quarantine table {table!r}; the tables are {', '.join(QUARANTINE_TABLES)}")
    if rule is None:
        return
    tables = [table] if table is not None else list(QUARANTINE_TABLES)
    known = sorted({name for each in tables for name in rule_names(each)})
    if rule not in known:
        scope = f"of {table}" if table is not None else "of any table"
        raise PipelineError(f"no rule {rule!r} {scope}; the rules are {', '.join(known)}")


def select_quarantined(lake: Lake, table: str | None = None, rule: str | None = None, limit: int = 50) -> Selection:
    """The quarantined rows of one table (or every table), of one rule (or any), in table order
    then file line or message offset; a table silver has not written yet has none."""
    check_filters(table, rule)
    found = {name: open_table(lake.uri("quarantine", name)) for name in QUARANTINE_TABLES}
    if not any(found.values()):
        raise PipelineError(f"no quarantine tables in {lake.root}: run the silver layer first")
    rows: list[QuarantinedRow] = []
    matching = 0
    for name in [table] if table is not None else QUARANTINE_TABLES:
        if found[name] is None:
            continue
        # polars' own Parquet reader, as the rest of the lake reads: with a pyarrow scan
        # (``to_pyarrow_table``) the command once aborted at exit after printing every row
        # ("terminate called without an active exception", exit -6), most likely Arrow threads
        # outliving the interpreter (not reproduced on demand).
        scan = scan_table(lake.uri("quarantine", name))
        frame = (scan if rule is None else scan.filter(pl.col(RULE_COLUMN) == rule)).collect()
        matching += frame.height
        wanted = limit - len(rows)
        if frame.height and wanted > 0:
            rows.extend(describe(name, frame.sort(order_of(name)).head(wanted)))
    return Selection(rows, matching)


def order_of(table: str) -> list[str]:
    return ["_source", "partition", "offset", "_line_index"] if table == STREAM_ORDERS else ["_line"]


def describe(table: str, frame: pl.DataFrame) -> list[QuarantinedRow]:
    """Each row with where it came from in words and the row as received (CSV fields as a JSON object)."""
    if table == STREAM_ORDERS:
        return [QuarantinedRow(table, row[RULE_COLUMN], message_position(row), row["_batch_id"], row["value"] or "") for row in frame.iter_rows(named=True)]
    fields = [name for name in frame.columns if not name.startswith("_")]
    return [
        QuarantinedRow(
            table,
            row[RULE_COLUMN],
            f"{row['_source']} line {row['_line']}" + (f" ({row['_bronze_error']})" if row["_bronze_error"] else ""),
            row["_batch_id"],
            json.dumps({name: row[name] for name in fields}, ensure_ascii=False),
        )
        for row in frame.iter_rows(named=True)
    ]


def message_position(row: dict) -> str:
    """Kafka: topic, partition and offset; the landing folder: the file and the line's offset
    (its 0-based index); then which order line, when a line rule rejected it."""
    where = (
        f"{row['_source']} offset {row['offset']}" if row["partition"] is None
        else f"topic {row['_source']} partition {row['partition']} offset {row['offset']}"
    )
    return where if row["_line_index"] is None else f"{where}, lines[{row['_line_index']}]"


def render(selection: Selection) -> list[str]:
    """The rows as aligned columns (the row as received last, whole), then what was left out."""
    header = ("table", "rule", "where", "batch", "received")
    cells = [header, *((row.table, row.rule, row.where, row.batch or "", row.received) for row in selection.rows)]
    widths = [max(len(line[column]) for line in cells) for column in range(len(header) - 1)]
    lines = ["  ".join([*(value.ljust(width) for value, width in zip(line, widths)), line[-1]]) for line in cells]
    shown = len(selection.rows)
    if shown < selection.matching:
        lines.append(f"{shown} of {selection.matching} quarantined rows shown; --limit shows more")
    else:
        lines.append(f"{selection.matching} quarantined row{'' if selection.matching == 1 else 's'}")
    return lines if shown else lines[-1:]
