"""Run the silver rules in-process: polars over the bronze Delta tables, Delta out.

Quarantine is written before the silver table, and the silver commit records the state of
the bronze table it was built from (``lake.table_state``), so a crash between the two writes
is repaired by the next run. A table whose typed columns have changed type (see
``tasks.core.drift``) is refused before either write, so its previous silver and quarantine
tables stay as they were.

Every count is measured where it happens: rows in are bronze's rows, quarantined rows are
the quarantine's, merged rows are the ones the merge step removed, rows out are the silver
table's. ``TableCounts`` fails the table when they do not add up.
"""

from __future__ import annotations

import json

import narwhals as nw
import polars as pl
from deltalake import DeltaTable
from prefect import task

from tasks.local import lake
from tasks.orchestration.caching import input_cache_key
from tasks.core.drift import check_types
from tasks.errors import PipelineError
from tasks.core.quality import RULE_COLUMN, TableCounts, accepted, quarantined
from tasks.core.silver import SilverTable, build, merged
from tasks.local.stream import KAFKA_ORDERS
from tasks.core.stream import COORDINATES, STREAM_ORDERS, merge_events, parse_messages, validate

COUNTS_KEY = "logistics.counts"
MERGES_KEY = "logistics.merges"


def bronze_fingerprint(bronze_uri: str) -> str:
    """What a silver table depends on: the state of its bronze table, which must be sound."""
    problem = lake.table_problem(bronze_uri)
    if problem is not None:
        raise lake.DamagedTableError(bronze_uri, f"{problem}; run the bronze layer, which rebuilds it")
    state = lake.table_state(bronze_uri)
    if state is None:
        raise PipelineError(f"bronze table {bronze_uri} does not exist: run the bronze layer first")
    return state


def silver_outputs_current(lake_: lake.Lake, table: str, fingerprint: str) -> bool:
    """True when the silver table and its quarantine were built from ``fingerprint`` and are sound."""
    uri = lake_.uri("silver", table)
    return lake.recorded_input(uri) == fingerprint and lake.recorded_input(lake_.uri("quarantine", table)) == fingerprint


def run_silver_table(table: SilverTable, lake_: lake.Lake, fingerprint: str, force: bool = False) -> TableCounts:
    """Build one silver table and its quarantine from a bronze state, unless already done (or ``force``)."""
    silver_uri = lake_.uri("silver", table.name)
    if not force and silver_outputs_current(lake_, table.name, fingerprint):
        return recorded_counts(silver_uri)
    bronze_uri, version = lake.parse_state(fingerprint)
    bronze = pl.read_delta(bronze_uri, version=version)
    rows_in = bronze.height
    check_types(table.name, nw.from_native(bronze.lazy()), rows=rows_in)
    tagged, _, _ = build(table, nw.from_native(bronze.lazy()))
    tagged_frame = tagged.collect().to_native()
    del bronze  # tagged holds every bronze row; keep one copy in memory
    tagged_rows = nw.from_native(tagged_frame.lazy())
    rejected = quarantined(tagged_rows).collect().to_native()
    # Cleanse from the collected frame, so the rules are not evaluated a second time from bronze.
    cleansed = table.cleanse(accepted(tagged_rows)).collect().to_native()
    silver_frame = merged(table, nw.from_native(cleansed.lazy())).collect().to_native()
    counts = TableCounts(
        table=table.name,
        rows_in=rows_in,
        rows_out=silver_frame.height,
        quarantined=rejected.height,
        merged_duplicates=cleansed.height - silver_frame.height,
    )
    write_outputs(lake_, table.name, silver_frame, rejected, fingerprint, counts)
    return counts


def write_outputs(
    lake_: lake.Lake, table: str, silver: pl.DataFrame, rejected: pl.DataFrame, fingerprint: str, counts: TableCounts, merges: dict[str, int] | None = None,
) -> None:
    """Quarantine first, then silver: the silver commit (with its input, counts and how the
    merged rows were merged) marks the table done."""
    lake.overwrite(lake_.uri("quarantine", table), rejected.select(RULE_COLUMN, pl.exclude(RULE_COLUMN)), input_fingerprint=fingerprint)
    metadata = {COUNTS_KEY: counts.__dict__, **({MERGES_KEY: merges} if merges else {})}
    lake.overwrite(lake_.uri("silver", table), silver, input_fingerprint=fingerprint, metadata=metadata)


def stream_fingerprint(lake_: lake.Lake) -> str | None:
    """The stream's silver depends on its bronze table only: an unknown customer or product is
    gold's business (the unknown member), so a changed export never rebuilds the stream."""
    uri = lake_.uri("bronze", KAFKA_ORDERS)
    if not lake.table_exists(uri):
        return None
    return bronze_fingerprint(uri)


def run_stream_orders(lake_: lake.Lake, fingerprint: str, force: bool = False) -> TableCounts:
    """Parse, validate and merge the streamed orders into silver stream_orders (see
    ``tasks.core.stream.merge_events`` for the event semantics)."""
    silver_uri = lake_.uri("silver", STREAM_ORDERS)
    if not force and silver_outputs_current(lake_, STREAM_ORDERS, fingerprint):
        return recorded_counts(silver_uri)
    bronze_uri, bronze_version = lake.parse_state(fingerprint)
    lines = parse_messages(pl.read_delta(bronze_uri, version=bronze_version))
    tagged = validate(nw.from_native(lines.lazy())).collect().to_native()
    rejected = tagged.filter(pl.col(RULE_COLUMN).is_not_null()).select(RULE_COLUMN, "value", "_line_index", *COORDINATES)
    steps = merge_events(accepted(nw.from_native(tagged.lazy())))
    typed, first_delivery, latest_event = (step.collect().to_native().height for step in (steps.typed, steps.first_delivery, steps.latest_event))
    silver = steps.silver.collect().to_native()
    merges = {"replayed": typed - first_delivery, "superseded": first_delivery - latest_event, "summed": latest_event - silver.height}
    counts = TableCounts(
        table=STREAM_ORDERS,
        rows_in=lines.height,
        rows_out=silver.height,
        quarantined=rejected.height,
        merged_duplicates=sum(merges.values()),
    )
    write_outputs(lake_, STREAM_ORDERS, silver, rejected, fingerprint, counts, merges)
    return counts


def recorded_counts(silver_uri: str) -> TableCounts:
    """The counts stored with the silver table's latest commit (for a skipped rebuild)."""
    return TableCounts(**json.loads(DeltaTable(silver_uri).history(limit=1)[0][COUNTS_KEY]))


@task(task_run_name="silver-stream_orders", cache_key_fn=input_cache_key, persist_result=True)
def build_stream_orders(lake_: lake.Lake, target_uri: str, fingerprint: str, force: bool = False) -> TableCounts:
    """Build silver stream_orders (cached on the state of its bronze input)."""
    return run_stream_orders(lake_, fingerprint, force)


@task(task_run_name="silver-{table.name}", cache_key_fn=input_cache_key, persist_result=True)
def build_silver_table(table: SilverTable, lake_: lake.Lake, target_uri: str, fingerprint: str, force: bool = False) -> TableCounts:
    """Build one silver table (cached on the state of its bronze input)."""
    return run_silver_table(table, lake_, fingerprint, force)
