"""logistics-pipeline: the parent flow. Produce orders (optional), then bronze, silver, gold,
then a summary. Each layer is a sub-flow that can also run on its own."""

from __future__ import annotations

from typing import Annotated, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import Field

from logistics_pipeline.flows.bronze import bronze_layer
from logistics_pipeline.flows.gold import dbt_gold
from logistics_pipeline.flows.produce import produce_messages
from logistics_pipeline.flows.silver import silver_layer
from logistics_pipeline.tasks.core.contract import KAFKA_ORDERS, STREAM_ORDERS
from logistics_pipeline.tasks.core.orders import MAX_SEED
from logistics_pipeline.tasks.local.lake import Lake
from logistics_pipeline.tasks.orchestration.lock import lake_lock
from logistics_pipeline.tasks.settings import load_settings


@flow(name="logistics-pipeline")
def logistics_pipeline(
    source_dir: Annotated[str | None, Field(description="Folder with source_crm/ and source_erp/ (default: LOGISTICS_SOURCE_DIR or the shipped datasets).")] = None,
    lake: Annotated[str | None, Field(description="Lake folder (default: LOGISTICS_LAKE or ./lake).")] = None,
    orders: Annotated[int, Field(ge=0, description="Synthetic orders to produce to the stream first (0 = none).")] = 0,
    bad_fraction: Annotated[float, Field(ge=0, le=1, description="Share of deliberately bad orders among those produced.")] = 0.0,
    seed: Annotated[int | None, Field(ge=0, lt=MAX_SEED, description="Seed of the produced orders (reuse one to replay them); empty: a new seed each run.")] = None,
    bootstrap_servers: Annotated[str | None, Field(description="HOST:PORT of Kafka; empty uses the block or settings, else the landing folder.")] = None,
    kafka_block: Annotated[str | None, Field(description="Name of a saved 'Kafka Connection' block.")] = None,
    dbt_target: Annotated[str | None, Field(description="dbt target in dbt_gold/profiles.yml (default: LOGISTICS_DBT_TARGET or local; set databricks yourself with engine=databricks).")] = None,
    engine: Annotated[Literal["local", "databricks"] | None, Field(description="Where bronze and silver run: local or databricks (default LOGISTICS_ENGINE).")] = None,
    full_refresh: Annotated[bool, Field(description="Rebuild silver and gold from bronze, even where their inputs have not changed.")] = False,
    max_unknown_lines: Annotated[
        int | None, Field(ge=0, description="Fail when more order lines than this point to the unknown customer or product (default: LOGISTICS_MAX_UNKNOWN_LINES; unset: no limit).")
    ] = None,
) -> dict[str, object]:
    """Run the medallion pipeline over the CSV exports and the order stream.

    Args:
        source_dir: Folder with source_crm/ and source_erp/ (default: LOGISTICS_SOURCE_DIR or the shipped datasets).
        lake: Lake folder (default: LOGISTICS_LAKE or ./lake).
        orders: Synthetic orders to produce to the stream first (0 = none).
        bad_fraction: Share of deliberately bad orders among those produced.
        seed: Seed of the produced orders (reuse one to replay them); empty: a new seed each run.
        bootstrap_servers: HOST:PORT of Kafka; empty uses the block or settings, else the landing folder.
        kafka_block: Name of a saved 'Kafka Connection' block.
        dbt_target: dbt target in dbt_gold/profiles.yml (default: LOGISTICS_DBT_TARGET or local; set databricks yourself with engine=databricks).
        engine: Where bronze and silver run: local or databricks (default LOGISTICS_ENGINE).
        full_refresh: Rebuild silver and gold from bronze, even where their inputs have not changed.
        max_unknown_lines: Fail when more order lines than this point to the unknown customer or product.
    """
    settings = load_settings(source_dir=source_dir, lake=lake, dbt_target=dbt_target, kafka_bootstrap_servers=bootstrap_servers, engine=engine)
    if settings.engine == "databricks":
        # Imported here: databricks-sdk takes over a second to import, and only this engine needs it.
        from logistics_pipeline.tasks.databricks.jobs import require_credentials

        require_credentials(settings.databricks)  # fail at once, before producing anything
    with lake_lock(settings.lake):  # one run at a time per lake; the sub-flows re-enter it
        stream = {"bootstrap_servers": settings.kafka_bootstrap_servers if not kafka_block else None, "kafka_block": kafka_block}
        produced = produce_messages(count=orders, seed=seed, bad_fraction=bad_fraction, lake=settings.lake, **stream) if orders else None
        bronze = bronze_layer(source_dir=str(settings.source_dir), lake=settings.lake, engine=settings.engine, **stream)
        silver = silver_layer(lake=settings.lake, engine=settings.engine, full_refresh=full_refresh)
        gold = dbt_gold(lake=settings.lake, dbt_target=settings.dbt_target, full_refresh=full_refresh, max_unknown_lines=max_unknown_lines)

        summary = {
            "produced_messages": produced["delivered"] if produced else 0,
            "bronze_rows": sum(bronze.values()),
            "bronze_messages": bronze.get(KAFKA_ORDERS, 0),  # bronze counts the stream in messages
            "silver_rows": sum(c.rows_out for c in silver),
            "silver_order_lines": sum(c.rows_out for c in silver if c.table == STREAM_ORDERS),  # silver, in order lines
            "quarantined_rows": sum(c.quarantined for c in silver),
            "merged_duplicates": sum(c.merged_duplicates for c in silver),
            "gold_rows": gold,
            "gold": Lake(settings.lake).gold_path,
        }
        get_run_logger().info(
            "pipeline done: produced %(produced_messages)d messages; bronze %(bronze_rows)d rows (%(bronze_messages)d of them stream messages); "
            "silver %(silver_rows)d rows (%(silver_order_lines)d of them stream order lines; %(quarantined_rows)d quarantined, "
            "%(merged_duplicates)d merged); gold %(gold_rows)s at %(gold)s",
            summary,
        )
        create_markdown_artifact(key="pipeline-summary", markdown=summary_markdown(summary, silver), description="Rows per layer")
        return summary


def summary_markdown(summary: dict[str, object], silver: list) -> str:
    gold_rows = summary["gold_rows"] or {}
    lines = [
        "# logistics-pipeline run",
        "",
        "| layer | rows |",
        "| --- | --- |",
        f"| produced messages | {summary['produced_messages']} |",
        f"| bronze | {summary['bronze_rows']} ({summary['bronze_messages']} of them stream messages) |",
        f"| silver | {summary['silver_rows']} ({summary['silver_order_lines']} of them stream order lines; "
        f"{summary['quarantined_rows']} quarantined, {summary['merged_duplicates']} merged) |",
        *[f"| gold `{table}` | {rows} |" for table, rows in gold_rows.items()],
        "",
        "| silver table | in | out | quarantined | merged |",
        "| --- | --- | --- | --- | --- |",
        *[f"| {c.table} | {c.rows_in} | {c.rows_out} | {c.quarantined} | {c.merged_duplicates} |" for c in silver],
        "",
        f"Gold: `{summary['gold']}`",
    ]
    return "\n".join(lines)
