"""The `logistics-pipeline` command line: run the whole pipeline or one layer.

Every command exits 0 on success. A mistake in the command line or the settings (an
option's value, a missing folder, a lake that is a file) is reported before any Prefect
server or flow starts, in one line, with exit code 2; a run that fails exits 1, and one
stopped by SIGTERM or Ctrl-C exits 143 or 130. The `error:` line is always the last.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

import typer
from typer.core import TyperGroup

from logistics_pipeline.tasks.errors import is_error, one_line
from logistics_pipeline.tasks.orchestration.server import start_temporary_server


class _Commands(TyperGroup):
    """Lists each command with the first sentence of its help, whole: wrapped to the
    terminal's width, not cut at a third of it."""

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        commands = [(name, self.get_command(ctx, name)) for name in self.list_commands(ctx)]
        rows = [(name, command.get_short_help_str(limit=1_000)) for name, command in commands if command is not None and not command.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


app = typer.Typer(
    cls=_Commands,
    help="Medallion pipeline for logistics orders: CSV exports (and a Kafka stream) -> bronze -> silver -> gold.\n\n"
    "Settings come from LOGISTICS_* environment variables; options given here win. Without PREFECT_API_URL, "
    "each command starts a temporary Prefect server first (see the README).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help, wrapped to the terminal's width, never cut
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": shutil.get_terminal_size().columns},
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
Engine = Annotated[
    Literal["local", "databricks"] | None,
    typer.Option("--engine", help="Where bronze and silver run: local or databricks (default: $LOGISTICS_ENGINE or local)."),
]
DbtTarget = Annotated[str | None, typer.Option("--dbt-target", help="dbt target in dbt_gold/profiles.yml (default: local).")]
FullRefresh = Annotated[bool, typer.Option("--full-refresh", help="Rebuild from bronze on purpose, even where the inputs have not changed.")]
MaxUnknownLines = Annotated[
    int | None,
    typer.Option("--max-unknown-lines", min=0, help="Fail when more order lines than this point to the unknown customer or product (default: $LOGISTICS_MAX_UNKNOWN_LINES; unset: no limit)."),
]


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"logistics-pipeline {version('logistics-pipeline')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Show the version and exit.")] = False,
) -> None:
    """The options every command shares (the app's help is the Typer's)."""


def _checked(**inputs: Any) -> None:
    """Check what the command is given (``tasks.preflight.checked_settings``) before any
    Prefect server or flow starts; a mistake exits 2 with one line naming it."""
    from logistics_pipeline.tasks.preflight import InputError, checked_settings

    try:
        checked_settings(**inputs)
    except InputError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None


def _run(*actions: Callable[[], Any]) -> Any:
    """Run a flow (after the actions before it); on failure print one line naming the problem
    and exit 1. The temporary Prefect server, if the flow started one, is stopped first, so
    that the line is the last (an interruption is reported by ``main``)."""
    from logistics_pipeline.tasks.errors import quiet_pipeline_error_tracebacks
    from logistics_pipeline.tasks.orchestration.logs import errors_once_on_console
    from logistics_pipeline.tasks.orchestration.server import stop_temporary_server

    quiet_pipeline_error_tracebacks()
    errors_once_on_console()
    try:
        try:
            return [action() for action in actions][-1]
        finally:
            stop_temporary_server()
    except typer.Exit:
        raise
    except BaseException as error:  # noqa: BLE001 - the CLI's job is to turn any failure into one line
        if not is_error(error):
            raise  # an interruption: main reports it
        signum = _termination_signal_behind(error)
        if signum is not None and not _stopped_by:
            _stopped_by.append(signum)
        if not _stopped_by:  # else what the signal broke (main says it was stopped)
            typer.echo(f"error: {one_line(error) or type(error).__name__}", err=True)
        raise typer.Exit(1) from None


def _check_engine(engine: str | None) -> None:
    """engine=databricks without credentials fails here, before any server or flow starts."""
    from logistics_pipeline.tasks.settings import load_settings

    settings = load_settings(engine=engine)
    if settings.engine == "databricks":
        from logistics_pipeline.tasks.databricks.jobs import require_credentials

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
    _checked(uses_source=True, uses_dbt=True, source_dir=source_dir, lake=lake, engine=engine, dbt_target=dbt_target)
    from logistics_pipeline.flows.pipeline import logistics_pipeline

    summary = _run(
        lambda: _check_engine(engine),
        start_temporary_server,
        lambda: logistics_pipeline(
            source_dir=_text(source_dir), lake=lake, orders=orders, bad_fraction=bad_fraction, seed=seed,
            bootstrap_servers=bootstrap_servers, kafka_block=kafka_block, dbt_target=dbt_target, engine=engine,
            full_refresh=full_refresh, max_unknown_lines=max_unknown_lines,
        ),
    )
    typer.echo(
        f"bronze: {summary['bronze_rows']} rows ({summary['bronze_rows'] - summary['bronze_messages']} CSV records, "
        f"{summary['bronze_messages']} stream messages)"
    )
    typer.echo(
        f"silver: {summary['silver_rows']} rows ({summary['silver_rows'] - summary['silver_order_lines']} CSV records, "
        f"{summary['silver_order_lines']} stream order lines); {summary['quarantined_rows']} quarantined, "
        f"{summary['merged_duplicates']} merged duplicates"
    )
    typer.echo(f"gold tables in {summary['gold']}: {summary['gold_rows']}")


@app.command()
def bronze(
    source_dir: SourceDir = None, lake: LakeDir = None, bootstrap_servers: BootstrapServers = None, kafka_block: KafkaBlock = None, engine: Engine = None
) -> None:
    """Land the CSV exports and the new stream messages in bronze Delta tables (as text)."""
    _checked(uses_source=True, source_dir=source_dir, lake=lake, engine=engine)
    from logistics_pipeline.flows.bronze import bronze_layer

    rows = _run(start_temporary_server, lambda: bronze_layer(source_dir=_text(source_dir), lake=lake, bootstrap_servers=bootstrap_servers, kafka_block=kafka_block, engine=engine))
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
    _checked(lake=lake)
    from logistics_pipeline.flows.produce import produce_messages

    summary = _run(
        start_temporary_server,
        lambda: produce_messages(
            count=orders, seed=seed, rate=rate, bad_fraction=bad_fraction, topic=topic, partitions=partitions,
            bootstrap_servers=bootstrap_servers, kafka_block=kafka_block, lake=lake,
        )
    )
    typer.echo(f"produced {summary['delivered']} messages ({summary['order_lines']} order lines) at {summary['messages_per_s']} msg/s")


@app.command()
def silver(lake: LakeDir = None, engine: Engine = None, full_refresh: FullRefresh = False) -> None:
    """Build the silver tables (and quarantine) from bronze."""
    _checked(lake=lake, engine=engine)
    from logistics_pipeline.flows.silver import silver_layer

    counts = _run(start_temporary_server, lambda: silver_layer(lake=lake, engine=engine, full_refresh=full_refresh))
    for c in counts:
        typer.echo(f"{c.table}: {c.rows_in} in, {c.rows_out} out, {c.quarantined} quarantined, {c.merged_duplicates} merged")


@app.command()
def gold(lake: LakeDir = None, dbt_target: DbtTarget = None, full_refresh: FullRefresh = False, max_unknown_lines: MaxUnknownLines = None) -> None:
    """Build and test the gold models with dbt; publish them when every test passes."""
    _checked(uses_dbt=True, lake=lake, dbt_target=dbt_target)
    from logistics_pipeline.flows.gold import dbt_gold

    counts = _run(start_temporary_server, lambda: dbt_gold(lake=lake, dbt_target=dbt_target, full_refresh=full_refresh, max_unknown_lines=max_unknown_lines))
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
    _checked(lake=lake)
    from logistics_pipeline.flows.maintenance import lake_maintenance

    rows = _run(
        start_temporary_server,
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
def docs(
    lake: LakeDir = None,
    out: Annotated[Path | None, typer.Option("--out", help="Folder to write the site to (default: <lake>/docs).")] = None,
    serve: Annotated[bool, typer.Option("--serve", help="Then serve the site on http://127.0.0.1:PORT until stopped (Ctrl-C).")] = False,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port for --serve.")] = 8080,
) -> None:
    """Generate the dbt docs site of the lake's gold (models, columns, tests, lineage from the sources); --serve serves it."""
    from logistics_pipeline.tasks.gold.docs import docs_server, generate_docs
    from logistics_pipeline.tasks.settings import load_settings

    settings = _run(lambda: load_settings(lake=lake))
    server = _run(lambda: docs_server(out or Path(settings.lake) / "docs", port)) if serve else None  # a busy port fails before the work
    site = _run(lambda: generate_docs(settings, out))
    typer.echo(f"docs of {settings.lake}: {site.index} ({site.models} models, {site.sources} sources, {site.data_tests} data tests)")
    if server is not None:
        typer.echo(f"serving {site.index.parent} on http://127.0.0.1:{port}/ (Ctrl-C stops)")
        sys.stdout.flush()  # the lines above, before the command waits
        try:
            server.serve_forever()
        finally:
            server.server_close()


@app.command()
def quarantine(
    lake: LakeDir = None,
    table: Annotated[str | None, typer.Option("--table", help="Only this silver table's rejected rows, e.g. crm_cust_info or stream_orders.")] = None,
    rule: Annotated[str | None, typer.Option("--rule", help="Only the rows this rule rejected, e.g. missing_customer_id.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Print at most this many rows.")] = 50,
) -> None:
    """Print the rows silver rejected: the rule, the file line or stream offset, the batch, and the row as received."""
    from logistics_pipeline.tasks.errors import PipelineError
    from logistics_pipeline.tasks.local.lake import Lake
    from logistics_pipeline.tasks.local.quarantine import check_filters, render, select_quarantined
    from logistics_pipeline.tasks.settings import load_settings

    try:
        check_filters(table, rule)
    except PipelineError as error:  # a usage error: exit 2, like a bad option value
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    selection = _run(lambda: select_quarantined(Lake(load_settings(lake=lake).lake), table, rule, limit))
    for line in render(selection):
        typer.echo(line)



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


_stopped_by: list[int] = []
"""The signal (SIGTERM, SIGINT) that stopped the command, if one did."""


def _stop(signum: int, _frame: object) -> None:
    """SIGTERM and SIGINT unwind the command like Ctrl-C (a second one while it unwinds is
    ignored): flows end as crashed, the temporary Prefect server is stopped, and ``main``
    prints one line. Prefect's own SIGTERM handler, during a flow run, hands the signal on
    to this one."""
    if not _stopped_by:
        _stopped_by.append(signum)
        raise KeyboardInterrupt


def _termination_signal_behind(error: BaseException) -> int | None:
    """The signal of a Prefect ``TerminationSignal`` the error was raised while handling.

    Prefect's SIGTERM handler raises ``TerminationSignal`` and hands the signal on to
    ``_stop`` when it leaves the flow; a SIGTERM that lands while a task run is being created
    makes Prefect's crash handling fail instead (``ValueError: Task run is not set``), and the
    hand-on never comes."""
    from prefect.exceptions import TerminationSignal

    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, TerminationSignal):
            return error.signal
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _usage_error(error: typer.TyperException) -> str:
    """A usage error on one line, with where to find the usage."""
    context = getattr(error, "ctx", None)
    where = f" (see '{context.command_path} --help')" if context is not None else ""
    return one_line(error.format_message().replace("Value error, ", "")) + where


def main() -> None:
    # A temporary Prefect server phones home at start; on offline machines that only logs errors.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop)
    args = sys.argv[1:] or ["--help"]
    try:
        code = app(args=args, prog_name="logistics-pipeline", standalone_mode=False)
    except typer.TyperException as error:  # usage errors (exit 2), given as one line like every other error
        typer.echo(f"error: {_usage_error(error)}", err=True)
        code = error.exit_code
    except typer.Abort:
        code = 130
    if _stopped_by:
        name = signal.Signals(_stopped_by[0]).name
        typer.echo(f"error: stopped by {name}", err=True)
        code = 128 + _stopped_by[0]
    _exit(code or 0)


def _exit(code: int) -> NoReturn:
    """End the process without Python's teardown of every module it loaded: after a run,
    Prefect, dbt, polars and DuckDB leave thousands, and tearing them down takes 0.3-0.6 s
    that saves nothing. What an exit must do still happens first, in the interpreter's own
    order: other threads are joined, exit handlers run (Prefect's log and event workers
    send what they hold, a temporary server stops), and output is flushed."""
    threading._shutdown()  # type: ignore[attr-defined]  # what the interpreter's exit calls first
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be said
            pass
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
