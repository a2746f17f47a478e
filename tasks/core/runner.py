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
  quarantine's, and per rule; merged: rows the merge step removed; out: the silver table's),
  and checked by ``TableCounts``, which fails the table when they do not add up;
- **memory**: the runner materializes what it reads more than once (``TableStore.materialize``):
  the quarantined and the cleansed rows together, in one pass over the tagged bronze rows,
  which are never stored themselves (``TableStore.materialize_from``). It leaves merging
  duplicates, the one step whose state grows with the table, to the store
  (``TableStore.merge``: the local store merges in buckets of the merge key);
- **history**: a dimension's source table (``SilverTable.keeps_history``) then merges the
  silver table into its history (``tasks.core.history``), whose commit records the silver
  state it followed: a crash between the two is caught up by the next run, even when silver
  itself is up to date.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

import narwhals as nw
import polars as pl

from logistics_pipeline.tasks.core.contract import (
    COUNTS_KEY,
    INPUT_KEY,
    KAFKA_ORDERS,
    MERGES_KEY,
    STREAM_ORDERS,
)
from logistics_pipeline.tasks.core.drift import check_types
from logistics_pipeline.tasks.core.history import merge_history
from logistics_pipeline.tasks.core.quality import RULE_COLUMN, Rule, TableCounts, accepted, quarantined, rule_counts
from logistics_pipeline.tasks.core.silver import MALFORMED_ROW, SILVER_BY_NAME, SilverTable, tag_rows
from logistics_pipeline.tasks.core.stream import COORDINATES, STREAM_RULES, merge_events, validate
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

    def materialize_from(self, shared: nw.LazyFrame, *frames: nw.LazyFrame) -> tuple[nw.LazyFrame, ...]:
        """``frames``, each built on ``shared``, materialized, with ``shared`` computed once: the
        local store streams it through all of them in one query, Spark caches it (``release`` it)."""
        ...

    def merge(self, table: SilverTable, cleansed: nw.LazyFrame) -> nw.LazyFrame:
        """``merged(table, cleansed)``, materialized: the one step whose memory grows with the
        table's keys, which an engine may do in parts (the local store: in buckets of the merge key)."""
        ...

    def count(self, frame: nw.LazyFrame) -> int: ...

    def overwrite(self, layer: str, table: str, frame: nw.LazyFrame, metadata: dict[str, Any]) -> None:
        """Replace content and schema in one commit that records ``metadata``."""
        ...

    def append(self, layer: str, table: str, rows: pl.DataFrame) -> None:
        """Add a few rows made on the driver (the quality results) in one commit; creates the table."""
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
    """True when the silver table and its quarantine were both built from ``fingerprint``, and
    the table's history (if it keeps one) follows that silver table."""
    return built_from(store, table, fingerprint) and history_current(store, table)


def built_from(store: TableStore, table: str, fingerprint: str) -> bool:
    silver, quarantine = store.last_commit("silver", table), store.last_commit("quarantine", table)
    return silver is not None and quarantine is not None and silver.input == fingerprint == quarantine.input


def history_current(store: TableStore, table: str) -> bool:
    """True when the table keeps no history, or its history merged the silver table's latest state."""
    if table not in SILVER_BY_NAME or not SILVER_BY_NAME[table].keeps_history:
        return True
    silver, history = store.last_commit("silver", table), store.last_commit("history", table)
    return silver is not None and history is not None and history.input == silver.state


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


def run_silver_table(store: TableStore, table: SilverTable, force: bool = False, run_at: datetime | None = None) -> TableCounts:
    """Build one silver table and its quarantine from bronze's current state, unless already done
    (or ``force``); then bring its history up to date, with ``run_at`` (the silver run's time,
    default now) as the time of what changed. A table whose typed columns changed type is
    refused before any write."""
    bronze = bronze_state(store, table.bronze)
    if force or not built_from(store, table.name, bronze.state):
        counts = build_silver_table(store, table, bronze)
    else:
        counts = recorded_counts(store, table.name)
    if table.keeps_history and not history_current(store, table.name):
        update_history(store, table, run_at or datetime.now(timezone.utc))
    return counts


def build_silver_table(store: TableStore, table: SilverTable, bronze: Commit) -> TableCounts:
    source = store.read("bronze", table.bronze, bronze.version)
    rows_in = store.count(source)
    check_types(table.name, source, rows=rows_in)
    tagged = tag_rows(table, source)
    rejected, cleansed = store.materialize_from(tagged, quarantine_layout(quarantined(tagged)), table.cleanse(accepted(tagged)))
    silver = store.merge(table, cleansed)
    rows_out = store.count(silver)
    counts = TableCounts(
        table.name, rows_in, rows_out, store.count(rejected), merged_duplicates=store.count(cleansed) - rows_out,
        rules=quarantined_per_rule(table.name, rejected, (MALFORMED_ROW, *table.rules)),
    )
    write_outputs(store, table.name, silver, rejected, bronze.state, counts)
    store.release(tagged, rejected, cleansed, silver)
    return counts


def quarantined_per_rule(table: str, rejected: nw.LazyFrame, rules: tuple[Rule, ...]) -> tuple[tuple[str, int], ...]:
    """Rows quarantined per rule (``TableCounts.rules``), in one small aggregate."""
    observed = rejected.group_by(RULE_COLUMN).agg(nw.len().alias("rows")).collect().rows()
    return rule_counts(table, dict(observed), rules)


def update_history(store: TableStore, table: SilverTable, run_at: datetime) -> None:
    """Merge the silver table's latest state into its history (``tasks.core.history``) as of
    ``run_at``, in one commit that records that state."""
    silver = store.last_commit("silver", table.name)
    if silver is None:
        raise PipelineError(f"silver table {table.name} does not exist: its history has nothing to follow")
    history = store.last_commit("history", table.name)
    current = store.read("silver", table.name, silver.version)
    previous = None if history is None else store.read("history", table.name, history.version)
    versions = store.materialize(merge_history(previous, current, table.merge_key, run_at))
    store.overwrite("history", table.name, versions, {INPUT_KEY: silver.state})
    store.release(versions)


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
    counts = TableCounts(
        STREAM_ORDERS, store.count(lines), rows_out, store.count(rejected), merged_duplicates=sum(merges.values()),
        rules=quarantined_per_rule(STREAM_ORDERS, rejected, STREAM_RULES),
    )
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
