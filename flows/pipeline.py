"""logistics-pipeline: the parent flow. Bronze, then silver, then gold, then a summary.

Each layer is a sub-flow that can also run on its own.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.bronze import bronze_layer
from flows.gold import dbt_gold
from flows.silver import silver_layer
from tasks.lake import Lake
from tasks.settings import load_settings


@flow(name="logistics-pipeline")
def logistics_pipeline(
    source_dir: str | None = None,
    lake: str | None = None,
    orders: int = 0,
    dbt_target: str | None = None,
) -> dict[str, object]:
    """Run the medallion pipeline over the CSV exports (and the order stream)."""
    settings = load_settings(source_dir=source_dir, lake=lake, dbt_target=dbt_target)
    bronze = bronze_layer(source_dir=str(settings.source_dir), lake=settings.lake)
    silver = silver_layer(lake=settings.lake)
    gold = dbt_gold(lake=settings.lake, dbt_target=settings.dbt_target)

    summary = {
        "bronze_rows": sum(bronze.values()),
        "silver_rows": sum(c.rows_out for c in silver),
        "quarantined_rows": sum(c.quarantined for c in silver),
        "merged_duplicates": sum(c.merged_duplicates for c in silver),
        "gold_rows": gold,
        "gold": Lake(settings.lake).gold_path,
    }
    get_run_logger().info(
        "pipeline done: bronze %(bronze_rows)d rows, silver %(silver_rows)d rows "
        "(%(quarantined_rows)d quarantined, %(merged_duplicates)d merged), gold %(gold_rows)s at %(gold)s",
        summary,
    )
    create_markdown_artifact(key="pipeline-summary", markdown=_summary_markdown(summary), description="Rows per layer")
    return summary


def _summary_markdown(summary: dict[str, object]) -> str:
    gold_rows = summary["gold_rows"] or {}
    lines = [
        "# logistics-pipeline run",
        "",
        "| layer | rows |",
        "| --- | --- |",
        f"| bronze | {summary['bronze_rows']} |",
        f"| silver | {summary['silver_rows']} ({summary['quarantined_rows']} quarantined, {summary['merged_duplicates']} merged) |",
        *[f"| gold `{table}` | {rows} |" for table, rows in gold_rows.items()],
        "",
        f"Gold: `{summary['gold']}`",
    ]
    return "\n".join(lines)
