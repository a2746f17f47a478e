"""dbt-gold: build dim_customers, dim_products and fact_orders with dbt and test them.

A failing data test fails the flow with the test's name; it is never retried.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from tasks.assets import link_dbt_sources
from tasks.dbt import dbt_build, gold_row_counts, stream_freshness
from tasks.gold_state import gold_inputs, gold_is_current, record_gold_build
from tasks.lake import Lake, row_count
from tasks.lock import lake_lock
from tasks.silver import SILVER_TABLES
from tasks.stream_silver import STREAM_ORDERS
from tasks.settings import load_settings


@flow(name="dbt-gold")
def dbt_gold(lake: str | None = None, dbt_target: str | None = None) -> dict[str, int]:
    """Run `dbt build` on the gold project; returns rows per gold table (local target).

    Args:
        lake: Lake folder (default: LOGISTICS_LAKE or ./lake).
        dbt_target: dbt target in dbt_gold/profiles.yml (default: local).
    """
    settings = load_settings(lake=lake, dbt_target=dbt_target)
    logger = get_run_logger()
    with lake_lock(settings.lake):  # gold.duckdb has one writer; silver must not change under dbt
        if settings.dbt_target != "local":
            dbt_build(settings)
            check_stream_freshness(settings)
            return {}
        silver_tables = [*(t.name for t in SILVER_TABLES), STREAM_ORDERS]
        inputs = gold_inputs(settings, silver_tables)
        if gold_is_current(settings, inputs):
            logger.info("gold is up to date: built from these silver versions and this dbt project; dbt build skipped")
        else:
            link_dbt_sources(settings.lake, silver_tables)  # lineage: silver Delta table -> dbt source -> gold model
            dbt_build(settings)
        check_stream_freshness(settings)
        record_gold_build(settings, inputs)  # after freshness too: dbt may touch gold.duckdb
        counts = gold_row_counts(Lake(settings.lake).gold_path)
    logger.info("gold: %s", ", ".join(f"{table} {rows}" for table, rows in counts.items()))
    return counts


def check_stream_freshness(settings) -> None:
    """A stale stream (no order ingested for a day: warn; two days: error) is a warning in the
    flow, not a failure: gold from the CSV exports is still right."""
    logger = get_run_logger()
    if settings.dbt_target == "local" and row_count(Lake(settings.lake).uri("silver", STREAM_ORDERS)) == 0:
        logger.info("stream freshness: no streamed orders yet, nothing to check")
        return
    freshness = stream_freshness(settings)
    if freshness["status"] == "pass":
        logger.info("stream freshness: pass (last order ingested %s h ago)", freshness.get("age_hours"))
        return
    logger.warning("stream freshness: %s: stream_orders is stale (%s)", freshness["status"], freshness)
    create_markdown_artifact(
        key="stream-freshness",
        markdown=f"**Stream freshness: {freshness['status']}** (warn after 1 day, error after 2)\n\n`{freshness}`",
        description="dbt source freshness on silver.stream_orders",
    )
