"""dbt-gold: build dim_customers, dim_products and fact_orders with dbt and test them.

A failing data test fails the flow with the test's name; it is never retried.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from tasks.dbt import dbt_build, gold_row_counts
from tasks.lake import Lake
from tasks.settings import load_settings


@flow(name="dbt-gold")
def dbt_gold(lake: str | None = None, dbt_target: str | None = None) -> dict[str, int]:
    """Run `dbt build` on the gold project; returns rows per gold table (local target)."""
    settings = load_settings(lake=lake, dbt_target=dbt_target)
    dbt_build(settings)
    if settings.dbt_target != "local":
        return {}
    counts = gold_row_counts(Lake(settings.lake).gold_path)
    get_run_logger().info("gold: %s", ", ".join(f"{table} {rows}" for table, rows in counts.items()))
    return counts
