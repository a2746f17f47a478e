"""Run the silver rules in-process: polars over the bronze Delta tables, Delta out.

Quarantine is written before the silver table, and the silver commit records the bronze
version it was built from, so a crash between the two writes is repaired by the next run.
A table whose typed columns have changed type (see ``tasks.drift``) is refused before either
write, so its previous silver and quarantine tables stay as they were.
"""

from __future__ import annotations

import json

import narwhals as nw
import polars as pl
from deltalake import DeltaTable
from prefect import task

from tasks import lake
from tasks.caching import input_cache_key
from tasks.drift import check_types
from tasks.errors import PipelineError
from tasks.quality import RULE_COLUMN, TableCounts, accepted, quarantined
from tasks.silver import SilverTable, build, merged
from tasks.stream_bronze import KAFKA_ORDERS
from tasks.stream_silver import COORDINATES, STREAM_ORDERS, order_lines, parse_messages, validate

COUNTS_KEY = "logistics.counts"


def bronze_fingerprint(bronze_uri: str) -> str:
    """What a silver table depends on: the version of its bronze table."""
    version = lake.table_version(bronze_uri)
    if version is None:
        raise PipelineError(f"bronze table {bronze_uri} does not exist: run the bronze layer first")
    return f"{bronze_uri}@v{version}"


def versioned(uri: str) -> tuple[str, int]:
    uri, version = uri.rsplit("@v", 1)
    return uri, int(version)


def run_silver_table(table: SilverTable, lake_: lake.Lake, fingerprint: str) -> TableCounts:
    """Build one silver table and its quarantine from a bronze version, unless already done."""
    silver_uri = lake_.uri("silver", table.name)
    quarantine_uri = lake_.uri("quarantine", table.name)
    if lake.recorded_input(silver_uri) == fingerprint:
        return recorded_counts(silver_uri)
    bronze_uri, version = versioned(fingerprint)
    bronze = pl.read_delta(bronze_uri, version=version)
    check_types(table.name, nw.from_native(bronze.lazy()), rows=bronze.height)
    tagged, _, _ = build(table, nw.from_native(bronze.lazy()))
    tagged_frame = tagged.collect().to_native()
    del bronze  # tagged holds every bronze row; keep one copy in memory
    tagged_rows = nw.from_native(tagged_frame.lazy())
    rejected = quarantined(tagged_rows).collect().to_native()
    # Cleanse from the collected frame, so the rules are not evaluated a second time from bronze.
    silver_frame = merged(table, table.cleanse(accepted(tagged_rows))).collect().to_native()
    counts = TableCounts(
        table=table.name,
        rows_in=tagged_frame.height,
        rows_out=silver_frame.height,
        quarantined=rejected.height,
        merged_duplicates=tagged_frame.height - rejected.height - silver_frame.height,
    )
    write_outputs(silver_uri, silver_frame, quarantine_uri, rejected, fingerprint, counts)
    return counts


def write_outputs(silver_uri: str, silver: pl.DataFrame, quarantine_uri: str, rejected: pl.DataFrame, fingerprint: str, counts: TableCounts) -> None:
    """Quarantine first, then silver: the silver commit (with its input and counts) marks the table done."""
    lake.overwrite(quarantine_uri, rejected.select(RULE_COLUMN, pl.exclude(RULE_COLUMN)), input_fingerprint=fingerprint)
    lake.overwrite(silver_uri, silver, input_fingerprint=fingerprint, metadata={COUNTS_KEY: counts.__dict__})


def stream_fingerprint(lake_: lake.Lake) -> str | None:
    """The stream's silver depends on its bronze table and on the known products and customers."""
    if not lake.table_exists(lake_.uri("bronze", KAFKA_ORDERS)):
        return None
    return "|".join(bronze_fingerprint(uri) for uri in (
        lake_.uri("bronze", KAFKA_ORDERS), lake_.uri("silver", "crm_prd_info"), lake_.uri("silver", "crm_cust_info"),
    ))


def run_stream_orders(lake_: lake.Lake, fingerprint: str) -> TableCounts:
    """Parse, validate and deduplicate the streamed orders into silver stream_orders."""
    silver_uri = lake_.uri("silver", STREAM_ORDERS)
    if lake.recorded_input(silver_uri) == fingerprint:
        return recorded_counts(silver_uri)
    (bronze_uri, bronze_version), (products_uri, products_version), (customers_uri, customers_version) = map(versioned, fingerprint.split("|"))
    lines = parse_messages(pl.read_delta(bronze_uri, version=bronze_version))
    products = pl.scan_delta(products_uri, version=products_version).filter(pl.col("prd_end_dt").is_null())
    customers = pl.scan_delta(customers_uri, version=customers_version)
    tagged = validate(nw.from_native(lines.lazy()), nw.from_native(products), nw.from_native(customers)).collect().to_native()
    rejected = tagged.filter(pl.col(RULE_COLUMN).is_not_null()).select(RULE_COLUMN, "value", "_line_index", *COORDINATES)
    silver = order_lines(accepted(nw.from_native(tagged.lazy()))).collect().to_native()
    counts = TableCounts(
        table=STREAM_ORDERS,
        rows_in=lines.height,
        rows_out=silver.height,
        quarantined=rejected.height,
        merged_duplicates=lines.height - rejected.height - silver.height,
    )
    write_outputs(silver_uri, silver, lake_.uri("quarantine", STREAM_ORDERS), rejected, fingerprint, counts)
    return counts


def recorded_counts(silver_uri: str) -> TableCounts:
    """The counts stored with the silver table's latest commit (for a skipped rebuild)."""
    return TableCounts(**json.loads(DeltaTable(silver_uri).history(limit=1)[0][COUNTS_KEY]))


@task(task_run_name="silver-stream_orders", cache_key_fn=input_cache_key, persist_result=True)
def build_stream_orders(lake_: lake.Lake, target_uri: str, fingerprint: str) -> TableCounts:
    """Build silver stream_orders (cached on the versions of its inputs)."""
    return run_stream_orders(lake_, fingerprint)


@task(task_run_name="silver-{table.name}", cache_key_fn=input_cache_key, persist_result=True)
def build_silver_table(table: SilverTable, lake_: lake.Lake, target_uri: str, fingerprint: str) -> TableCounts:
    """Build one silver table (cached on the Delta version of its bronze input)."""
    return run_silver_table(table, lake_, fingerprint)
