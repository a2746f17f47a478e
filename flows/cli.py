"""The `logistics-pipeline` command line: run the whole pipeline or one layer.

Every command exits 0 on success and 1 with a one-line reason on failure.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    help="Medallion pipeline for logistics orders: CSV exports (and a Kafka stream) -> bronze -> silver -> gold.\n\n"
    "Settings come from LOGISTICS_* environment variables; options given here win.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SourceDir = Annotated[
    Path | None,
    typer.Option("--source-dir", help="Folder with source_crm/*.csv and source_erp/*.csv (default: the shipped datasets/)."),
]
LakeDir = Annotated[str | None, typer.Option("--lake", help="Lake folder for bronze/, silver/, quarantine/ and gold.duckdb (default: ./lake).")]
BootstrapServers = Annotated[
    str | None,
    typer.Option("--bootstrap-servers", help="Kafka HOST:PORT (default: $KAFKA_BOOTSTRAP_SERVERS; unset means the local landing folder)."),
]
KafkaBlock = Annotated[str | None, typer.Option("--kafka-block", help="Name of a saved 'Kafka Connection' block to use instead.")]
Engine = Annotated[str | None, typer.Option("--engine", help="Where bronze and silver run: local or databricks (default: $LOGISTICS_ENGINE or local).")]
DbtTarget = Annotated[str | None, typer.Option("--dbt-target", help="dbt target in dbt_gold/profiles.yml (default: local).")]
FullRefresh = Annotated[bool, typer.Option("--full-refresh", help="Rebuild from bronze on purpose, even where the inputs have not changed.")]
MaxUnknownLines = Annotated[
    int | None,
    typer.Option("--max-unknown-lines", min=0, help="Fail when more order lines than this point to the unknown customer or product (default: $LOGISTICS_MAX_UNKNOWN_LINES; unset: no limit)."),
]


def _run(action: Callable[[], Any]) -> Any:
    """Run a flow; on failure print one line naming the problem and exit 1."""
    from logistics_pipeline.tasks.errors import one_line, quiet_pipeline_error_tracebacks

    quiet_pipeline_error_tracebacks()
    try:
        return action()
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        raise typer.Exit(130) from None
    except Exception as error:  # noqa: BLE001 - the CLI's job is to turn any failure into one line
        message = one_line(error) or type(error).__name__
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(1) from None


def _check_engine(engine: str | None) -> None:
    """engine=databricks without credentials fails here, before any server or flow starts."""
    from logistics_pipeline.tasks.databricks.jobs import require_credentials
    from logistics_pipeline.tasks.settings import load_settings

    settings = load_settings(engine=engine)
    if settings.engine == "databricks":
        require_credentials(settings.databricks)


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)


@app.command()
def run(
    source_dir: SourceDir = None,
    lake: LakeDir = None,
    orders: Annotated[int, typer.Option("--orders", min=0, help="Orders to produce to the stream first (0 = none).")] = 0,
    bad_fraction: Annotated[float, typer.Option("--bad-fraction", min=0.0, max=1.0, help="Share of deliberately bad orders.")] = 0.0,
    seed: Annotated[int | None, typer.Option("--seed", min=0, help="Seed of the produced orders (default: a new one each run).")] = None,
    bootstrap_servers: BootstrapServers = None,
    kafka_block: KafkaBlock = None,
    dbt_target: DbtTarget = None,
    engine: Engine = None,
    full_refresh: FullRefresh = False,
    max_unknown_lines: MaxUnknownLines = None,
) -> None:
    """Run the whole pipeline: produce orders (with --orders), bronze, silver, then gold (dbt)."""
    from logistics_pipeline.flows.pipeline import logistics_pipeline

    _run(lambda: _check_engine(engine))
    summary = _run(
        lambda: logistics_pipeline(
            source_dir=_text(source_dir), lake=lake, orders=orders, bad_fraction=bad_fraction, seed=seed,
            bootstrap_servers=bootstrap_servers, kafka_block=kafka_block, dbt_target=dbt_target, engine=engine,
            full_refresh=full_refresh, max_unknown_lines=max_unknown_lines,
        )
    )
    typer.echo(f"gold tables in {summary['gold']}: {summary['gold_rows']}")


@app.command()
def bronze(
    source_dir: SourceDir = None, lake: LakeDir = None, bootstrap_servers: BootstrapServers = None, kafka_block: KafkaBlock = None, engine: Engine = None
) -> None:
    """Land the CSV exports and the new stream messages in bronze Delta tables (as text)."""
    from logistics_pipeline.flows.bronze import bronze_layer

    rows = _run(lambda: bronze_layer(source_dir=_text(source_dir), lake=lake, bootstrap_servers=bootstrap_servers, kafka_block=kafka_block, engine=engine))
    typer.echo(f"bronze rows: {rows}")


@app.command()
def produce(
    orders: Annotated[int, typer.Option("--orders", min=0, help="Order messages to produce (one message per order).")] = 1000,
    seed: Annotated[int | None, typer.Option("--seed", min=0, help="Same seed, same orders (default: a new one each run).")] = None,
    rate: Annotated[float | None, typer.Option("--rate", min=0.001, help="At most this many messages per second.")] = None,
    bad_fraction: Annotated[float, typer.Option("--bad-fraction", min=0.0, max=1.0, help="Share of deliberately bad messages.")] = 0.0,
    topic: Annotated[str | None, typer.Option("--topic", help="Topic (default: $LOGISTICS_KAFKA_TOPIC or orders).")] = None,
    partitions: Annotated[int, typer.Option("--partitions", min=1, help="Partitions when the topic is created.")] = 3,
    bootstrap_servers: BootstrapServers = None,
    kafka_block: KafkaBlock = None,
    lake: LakeDir = None,
) -> None:
    """Produce synthetic orders for real customers and products to Kafka (or the landing folder)."""
    from logistics_pipeline.flows.produce import produce_messages

    summary = _run(
        lambda: produce_messages(
            count=orders, seed=seed, rate=rate, bad_fraction=bad_fraction, topic=topic, partitions=partitions,
            bootstrap_servers=bootstrap_servers, kafka_block=kafka_block, lake=lake,
        )
    )
    typer.echo(f"produced {summary['delivered']} messages ({summary['order_lines']} order lines) at {summary['messages_per_s']} msg/s")


@app.command()
def silver(lake: LakeDir = None, engine: Engine = None, full_refresh: FullRefresh = False) -> None:
    """Build the silver tables (and quarantine) from bronze."""
    from logistics_pipeline.flows.silver import silver_layer

    counts = _run(lambda: silver_layer(lake=lake, engine=engine, full_refresh=full_refresh))
    for c in counts:
        typer.echo(f"{c.table}: {c.rows_in} in, {c.rows_out} out, {c.quarantined} quarantined, {c.merged_duplicates} merged")


@app.command()
def gold(lake: LakeDir = None, dbt_target: DbtTarget = None, full_refresh: FullRefresh = False, max_unknown_lines: MaxUnknownLines = None) -> None:
    """Build and test the gold models with dbt; publish them when every test passes."""
    from logistics_pipeline.flows.gold import dbt_gold

    counts = _run(lambda: dbt_gold(lake=lake, dbt_target=dbt_target, full_refresh=full_refresh, max_unknown_lines=max_unknown_lines))
    typer.echo(f"gold rows: {counts}")


@app.command()
def maintain(
    lake: LakeDir = None,
    retention_hours: Annotated[
        int | None, typer.Option("--retention-hours", min=0, help="Keep files removed less than this long ago (default: 168, or $LOGISTICS_MAINTENANCE_RETENTION_HOURS).")
    ] = None,
    allow_short_retention: Annotated[
        bool, typer.Option("--allow-short-retention", help="Allow a retention under the tables' minimum (168 h): time travel that far back is lost.")
    ] = False,
    compact: Annotated[bool, typer.Option("--compact/--no-compact", help="Compact small files (the stream's micro-batches).")] = True,
) -> None:
    """Compact small files, vacuum files older than the retention and checkpoint every Delta table (safe while the pipeline runs)."""
    from logistics_pipeline.flows.maintenance import lake_maintenance

    rows = _run(
        lambda: lake_maintenance(
            lake=lake, retention_hours=retention_hours, compact=compact, enforce_retention_duration=False if allow_short_retention else None
        )
    )
    for row in rows:
        notes = f" ({row['notes']})" if row["notes"] else ""
        typer.echo(
            f"{row['table']}: {row['files_before']} -> {row['files_after']} files, "
            f"{row['files_on_disk_before']} -> {row['files_on_disk_after']} on disk, {row['vacuumed']} vacuumed{notes}"
        )


@app.command("generate-datasets")
def generate_datasets(
    out: Annotated[Path, typer.Option("--out", help="Folder to write source_crm/ and source_erp/ into.")],
    scale: Annotated[float, typer.Option("--scale", min=0.001, help="1 is about the reference size; 100 is about 6 million sales lines.")] = 1.0,
    seed: Annotated[int, typer.Option("--seed", help="Same seed and scale give byte-identical files.")] = 42,
) -> None:
    """Generate synthetic CRM/ERP CSV exports (deterministic)."""
    from logistics_pipeline.datasets.generate import generate_datasets as generate

    rows = _run(lambda: generate(out, scale=scale, seed=seed))
    for name, count in rows.items():
        typer.echo(f"{out / name}: {count} rows")


@app.command()
def quality(
    lake: LakeDir = None,
    runs: Annotated[int, typer.Option("--runs", min=1, help="How many of the latest silver runs to show.")] = 7,
    table: Annotated[str | None, typer.Option("--table", help="Only this silver table, e.g. crm_sales_details.")] = None,
) -> None:
    """Print the last silver runs' quality results per table and rule (share of rows quarantined per run), and the trend."""
    from logistics_pipeline.tasks.core.quality_log import quality_report
    from logistics_pipeline.tasks.local.lake import Lake
    from logistics_pipeline.tasks.local.quality_results import read_quality_results
    from logistics_pipeline.tasks.settings import load_settings

    lines = _run(lambda: quality_report(read_quality_results(Lake(load_settings(lake=lake).lake)), runs=runs, table=table))
    for line in lines:
        typer.echo(line)


def main() -> None:
    # A temporary Prefect server phones home at start; on offline machines that only logs errors.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Without PREFECT_API_URL each command starts a temporary server; give it time on a busy machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    app(prog_name="logistics-pipeline")


if __name__ == "__main__":
    sys.exit(main())
