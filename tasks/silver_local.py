"""Run the silver rules in-process: polars over the bronze Delta tables, Delta out.

Quarantine is written before the silver table, and the silver commit records the bronze
version it was built from, so a crash between the two writes is repaired by the next run.
"""

from __future__ import annotations

import json

import narwhals as nw
import polars as pl
from deltalake import DeltaTable
from prefect import task

from tasks import lake
from tasks.caching import input_cache_key
from tasks.errors import PipelineError
from tasks.quality import RULE_COLUMN, TableCounts, quarantined
from tasks.silver import SilverTable, build

COUNTS_KEY = "logistics.counts"


def bronze_fingerprint(bronze_uri: str) -> str:
    """What a silver table depends on: the version of its bronze table."""
    version = lake.table_version(bronze_uri)
    if version is None:
        raise PipelineError(f"bronze table {bronze_uri} does not exist: run the bronze layer first")
    return f"{bronze_uri}@v{version}"


def run_silver_table(table: SilverTable, lake_: lake.Lake, fingerprint: str) -> TableCounts:
    """Build one silver table and its quarantine from a bronze version, unless already done."""
    silver_uri = lake_.uri("silver", table.name)
    quarantine_uri = lake_.uri("quarantine", table.name)
    if lake.recorded_input(silver_uri) == fingerprint:
        return recorded_counts(silver_uri)
    bronze_uri, version = fingerprint.rsplit("@v", 1)
    bronze = pl.read_delta(bronze_uri, version=int(version))
    tagged, _, silver = build(table, nw.from_native(bronze.lazy()))
    tagged_frame = tagged.collect().to_native()
    rejected = quarantined(nw.from_native(tagged_frame.lazy())).collect().to_native()
    silver_frame = silver.collect().to_native()
    counts = TableCounts(
        table=table.name,
        rows_in=bronze.height,
        rows_out=silver_frame.height,
        quarantined=rejected.height,
        merged_duplicates=tagged_frame.height - rejected.height - silver_frame.height,
    )
    lake.overwrite(quarantine_uri, rejected.select(RULE_COLUMN, pl.exclude(RULE_COLUMN)), input_fingerprint=fingerprint)
    lake.overwrite(silver_uri, silver_frame, input_fingerprint=fingerprint, metadata={COUNTS_KEY: counts.__dict__})
    return counts


def recorded_counts(silver_uri: str) -> TableCounts:
    """The counts stored with the silver table's latest commit (for a skipped rebuild)."""
    return TableCounts(**json.loads(DeltaTable(silver_uri).history(limit=1)[0][COUNTS_KEY]))


@task(task_run_name="silver-{table.name}", cache_key_fn=input_cache_key, persist_result=True)
def build_silver_table(table: SilverTable, lake_: lake.Lake, target_uri: str, fingerprint: str) -> TableCounts:
    """Build one silver table (cached on the Delta version of its bronze input)."""
    return run_silver_table(table, lake_, fingerprint)
