"""The silver runner, once for both engines: over a ``TableStore`` that the local engine
(delta-rs and polars, ``tasks.local.store``) and the Spark job (``tasks.spark.store``) implement.

What is decided here, and nowhere else:

- **skip**: a silver table and its quarantine are rebuilt unless both recorded, in their
  latest commit, the *state* of the bronze table they were built from (version, identity and
  commit time: see the stores' ``last_commit``);
- **layout**: quarantine holds ``_rule`` first, then the row as received;
- **order of writes**: quarantine first, then silver, whose commit (with its input and counts)
  marks the table done, so a crash between the two is repaired by the next run;
- **counts**: each one measured where it happens (rows in: bronze's rows; quarantined: the
  quarantine's; merged: rows the merge step removed; out: the silver table's), and checked
  by ``TableCounts``, which fails the table when they do not add up.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import narwhals as nw

from logistics_pipeline.tasks.core.contract import (
    COUNTS_KEY,
    INPUT_KEY,
    KAFKA_ORDERS,
    MERGES_KEY,
    STREAM_ORDERS,
)
from logistics_pipeline.tasks.core.drift import check_types
from logistics_pipeline.tasks.core.quality import RULE_COLUMN, TableCounts, accepted, quarantined
from logistics_pipeline.tasks.core.silver import SilverTable, merged, tag_rows
from logistics_pipeline.tasks.core.stream import COORDINATES, merge_events, validate
from logistics_pipeline.tasks.errors import PipelineError


@dataclass(frozen=True)
class Commit:
    """A table's latest commit: its version, what a table downstream records as its input
    (``state``: the version plus what tells a recreated table from the one recorded), and its
    custom metadata."""

    version: int
    state: str
    metadata: dict[str, Any]

    @property
    def input(self) -> str | None:
        return self.metadata.get(INPUT_KEY)


class TableStore(Protocol):
    """The few things the runner needs from an engine's tables (layer: bronze, silver, quarantine)."""

    def last_commit(self, layer: str, table: str) -> Commit | None: ...

    def read(self, layer: str, table: str, version: int) -> nw.LazyFrame: ...

    def materialize(self, frame: nw.LazyFrame) -> nw.LazyFrame:
        """Compute once, so the frames built on it and their counts do not recompute it."""
        ...

    def count(self, frame: nw.LazyFrame) -> int: ...

    def overwrite(self, layer: str, table: str, frame: nw.LazyFrame, metadata: dict[str, Any]) -> None:
        """Replace content and schema in one commit that records ``metadata``."""
        ...

    def parse_messages(self, bronze: nw.LazyFrame) -> nw.LazyFrame:
        """``tasks.core.stream.parse_messages`` over the engine's bronze kafka_orders."""
        ...

    def create_empty_stream_orders(self) -> None:
        """An empty silver stream_orders, so gold can read it before any order arrives."""
        ...

    def release(self, *frames: nw.LazyFrame) -> None:
        """Let go of what ``materialize`` holds for these frames (Spark's cache)."""
        ...


def quarantine_layout(rejected: nw.LazyFrame) -> nw.LazyFrame:
    """The rule first, then the row as received."""
    names = rejected.collect_schema().names()
    return rejected.select(RULE_COLUMN, *(name for name in names if name != RULE_COLUMN))


def outputs_current(store: TableStore, table: str, fingerprint: str) -> bool:
    """True when the silver table and its quarantine were both built from ``fingerprint``."""
    silver, quarantine = store.last_commit("silver", table), store.last_commit("quarantine", table)
    return silver is not None and quarantine is not None and silver.input == fingerprint == quarantine.input


def recorded_counts(store: TableStore, table: str) -> TableCounts:
    """The counts the silver table's latest commit recorded (for a skipped rebuild)."""
    commit = store.last_commit("silver", table)
    value = commit.metadata.get(COUNTS_KEY) if commit else None
    if value is None:
        raise PipelineError(f"silver {table}: its latest commit records no counts; rebuild it with --full-refresh")
    return TableCounts(**(json.loads(value) if isinstance(value, str) else value))


def bronze_state(store: TableStore, table: str) -> Commit:
    commit = store.last_commit("bronze", table)
    if commit is None:
        raise PipelineError(f"bronze table {table} does not exist: run the bronze layer first")
    return commit


def run_silver_table(store: TableStore, table: SilverTable, force: bool = False) -> TableCounts:
    """Build one silver table and its quarantine from bronze's current state, unless already done
    (or ``force``). A table whose typed columns changed type is refused before either write."""
    bronze = bronze_state(store, table.bronze)
    if not force and outputs_current(store, table.name, bronze.state):
        return recorded_counts(store, table.name)
    source = store.read("bronze", table.bronze, bronze.version)
    rows_in = store.count(source)
    check_types(table.name, source, rows=rows_in)
    tagged = store.materialize(tag_rows(table, source))
    del source  # tagged holds every bronze row: keep one copy in memory
    rejected = store.materialize(quarantine_layout(quarantined(tagged)))
    cleansed = store.materialize(table.cleanse(accepted(tagged)))
    silver = store.materialize(merged(table, cleansed))
    rows_out = store.count(silver)
    counts = TableCounts(table.name, rows_in, rows_out, store.count(rejected), merged_duplicates=store.count(cleansed) - rows_out)
    write_outputs(store, table.name, silver, rejected, bronze.state, counts)
    store.release(tagged, rejected, cleansed, silver)
    return counts


def run_stream_orders(store: TableStore, force: bool = False) -> TableCounts | None:
    """Parse, validate and merge the streamed orders into silver stream_orders (see
    ``tasks.core.stream.merge_events`` for the event semantics). Without bronze kafka_orders an
    empty stream_orders is created (gold reads it) and None returned. Counts are in order
    lines; merged lines are counted per step: replayed, superseded, summed."""
    bronze = store.last_commit("bronze", KAFKA_ORDERS)
    if bronze is None:
        if store.last_commit("silver", STREAM_ORDERS) is None:
            store.create_empty_stream_orders()
        return None
    if not force and outputs_current(store, STREAM_ORDERS, bronze.state):
        return recorded_counts(store, STREAM_ORDERS)
    lines = store.materialize(store.parse_messages(store.read("bronze", KAFKA_ORDERS, bronze.version)))
    tagged = store.materialize(validate(lines))
    rejected = quarantine_layout(tagged.filter(~nw.col(RULE_COLUMN).is_null()).select(RULE_COLUMN, "value", "_line_index", *COORDINATES))
    steps = merge_events(accepted(tagged))
    typed, first_delivery, latest_event = (store.count(step) for step in (steps.typed, steps.first_delivery, steps.latest_event))
    silver = store.materialize(steps.silver)
    rows_out = store.count(silver)
    merges = {"replayed": typed - first_delivery, "superseded": first_delivery - latest_event, "summed": latest_event - rows_out}
    rejected = store.materialize(rejected)
    counts = TableCounts(STREAM_ORDERS, store.count(lines), rows_out, store.count(rejected), merged_duplicates=sum(merges.values()))
    write_outputs(store, STREAM_ORDERS, silver, rejected, bronze.state, counts, merges)
    store.release(lines, tagged, silver, rejected)
    return counts


def write_outputs(
    store: TableStore, table: str, silver: nw.LazyFrame, rejected: nw.LazyFrame, fingerprint: str, counts: TableCounts,
    merges: dict[str, int] | None = None,
) -> None:
    """Quarantine first, then silver: the silver commit (its input, counts and merges) marks the table done."""
    store.overwrite("quarantine", table, rejected, {INPUT_KEY: fingerprint})
    store.overwrite("silver", table, silver, {INPUT_KEY: fingerprint, COUNTS_KEY: asdict(counts), **({MERGES_KEY: merges} if merges else {})})
