"""dbt-gold: build dim_customers, dim_products and fact_orders with dbt, test them, and
publish them only when every test passed.

Locally the build writes a staging DuckDB file that replaces gold.duckdb once its tests
pass (write, audit, publish: see ``tasks.gold.state``); a failing data test fails the flow
with the test's name, leaves the last good gold in place, and is never retried.
"""

from __future__ import annotations

import shutil
from collections import Counter
from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import Field

from logistics_pipeline.tasks.core.contract import STREAM_ORDERS
from logistics_pipeline.tasks.errors import PipelineError
from logistics_pipeline.tasks.gold.dbt import (
    UNKNOWN_MEMBER_KEY,
    GoldTestFailure,
    dbt_build,
    gold_row_counts,
    stream_freshness,
    unknown_member_lines,
)
from logistics_pipeline.tasks.gold.lake_views import HISTORY_INPUTS, LAKE_INPUTS, SILVER_INPUTS
from logistics_pipeline.tasks.gold.state import (
    failed_path,
    gold_inputs,
    keep_failed_build,
    publish,
    published_path,
    record_gold_build,
    start_build,
    why_rebuild,
)
from logistics_pipeline.tasks.local.lake import (
    DamagedTableError,
    Lake,
    row_count,
    table_exists,
    table_problem,
)
from logistics_pipeline.tasks.orchestration.assets import link_dbt_sources
from logistics_pipeline.tasks.orchestration.lock import lake_lock
from logistics_pipeline.tasks.orchestration.progress import Progress
from logistics_pipeline.tasks.settings import Settings, load_settings

@flow(name="dbt-gold")
def dbt_gold(
    lake: Annotated[str | None, Field(description="Lake folder (default: LOGISTICS_LAKE or ./lake).")] = None,
    dbt_target: Annotated[str | None, Field(description="dbt target in dbt_gold/profiles.yml (default: local).")] = None,
    full_refresh: Annotated[bool, Field(description="Build gold even when the published gold is up to date.")] = False,
    max_unknown_lines: Annotated[
        int | None, Field(ge=0, description="Fail when more order lines than this point to the unknown customer or product (default: LOGISTICS_MAX_UNKNOWN_LINES; unset: no limit).")
    ] = None,
) -> dict[str, int]:
    """Run `dbt build` on the gold project and publish it; returns rows per gold table (local target).

    Args:
        lake: Lake folder (default: LOGISTICS_LAKE or ./lake).
        dbt_target: dbt target in dbt_gold/profiles.yml (default: local).
        full_refresh: Build gold even when the published gold is up to date.
        max_unknown_lines: Fail when more order lines than this point to the unknown customer or product.
    """
    settings = load_settings(lake=lake, dbt_target=dbt_target, max_unknown_lines=max_unknown_lines)
    logger = get_run_logger()
    with lake_lock(settings.lake):  # gold.duckdb has one writer; silver must not change under dbt
        if settings.dbt_target != "local":
            report_gold_tests(dbt_build(settings, full_refresh=full_refresh))
            check_stream_freshness(settings, None)
            return {}
        check_silver(settings)
        inputs = gold_inputs(settings, SILVER_INPUTS, HISTORY_INPUTS)
        reason = "a full refresh was asked for" if full_refresh else why_rebuild(settings, inputs)
        if reason is None:
            logger.info("gold is up to date: %s holds what the last build published from these silver tables and this dbt project; dbt build skipped", published_path(settings))
            check_freshness_elsewhere(settings)
        else:
            logger.info("building gold: %s", reason)
            build_and_publish(settings, full_refresh)
            record_gold_build(settings, inputs)
        counts = gold_row_counts(str(published_path(settings)))
        unknown = unknown_member_lines(str(published_path(settings)))
    logger.info("gold: %s", ", ".join(f"{table} {rows}" for table, rows in counts.items()))
    report_unknown_members(unknown)
    return counts


def check_silver(settings: Settings) -> None:
    """Gold reads every silver table, history table and the quality results, which the silver
    layer writes: each must exist and be sound, or the flow stops naming it."""
    lake_ = Lake(settings.lake)
    for layer, table in LAKE_INPUTS:
        uri = lake_.uri(layer, table)
        if not table_exists(uri):
            raise PipelineError(f"{layer} table {uri} does not exist: run the silver layer first")
        if (problem := table_problem(uri)) is not None:
            raise DamagedTableError(uri, f"{problem}; run the silver layer, which rebuilds it")


def build_and_publish(settings: Settings, full_refresh: bool) -> None:
    """Write (dbt build into a staging file), audit (its tests), publish (rename over gold.duckdb)."""
    staging = start_build(settings)
    link_dbt_sources(settings.lake, SILVER_INPUTS)  # lineage: silver Delta table -> dbt source -> gold model
    try:
        with Progress("gold-progress", "gold", "models built", description="dbt models built into the staging gold (their tests follow)") as progress:
            tests = dbt_build(settings, str(staging), full_refresh=full_refresh, on_model=lambda context: model_built(progress, context))
    except GoldTestFailure as failure:
        kept = keep_failed_build(settings)
        raise GoldTestFailure(f"gold not published: {failure}; {published_path(settings)} is unchanged (the failed build is in {kept})") from None
    report_gold_tests(tests)
    check_stream_freshness(settings, str(staging))
    publish(settings)
    failed_path(settings).unlink(missing_ok=True)  # the last failure is fixed


def model_built(progress: Progress, context: Any) -> None:
    """After each dbt model: one more of the project's models (counted in the runner's manifest)."""
    if progress.total is None:
        progress.total = sum(node.resource_type == "model" for node in context.owner.manifest.nodes.values())
    progress.advance(note=context.node.name)


def report_gold_tests(statuses: dict[str, str]) -> None:
    """The data and unit tests of a passed build, in the log and as the ``gold-tests`` artifact
    (they run inside dbt, not as Prefect tasks); a warning is listed by name."""
    counted = Counter(statuses.values())
    summary = ", ".join(f"{count} {status}" for status, count in sorted(counted.items()))
    get_run_logger().info("gold tests: %d run: %s", len(statuses), summary or "none")
    warned = sorted(name for name, status in statuses.items() if status != "pass")
    create_markdown_artifact(
        key="gold-tests",
        markdown=f"**{len(statuses)} dbt tests: {summary or 'none'}**\n\n"
        + ("| test | status |\n| --- | --- |\n" + "".join(f"| {name} | {statuses[name]} |\n" for name in warned) if warned else "Every test passed."),
        description="dbt's data and unit tests of the published gold build",
    )


def check_freshness_elsewhere(settings: Settings) -> None:
    """Freshness when gold is up to date, on a scratch copy of the sources: running dbt on the
    published file would change it."""
    if not has_streamed_orders(settings):
        get_run_logger().info("stream freshness: no streamed orders yet, nothing to check")
        return
    scratch = start_build(settings)
    try:
        check_stream_freshness(settings, str(scratch))
    finally:
        shutil.rmtree(scratch.parent, ignore_errors=True)


def check_stream_freshness(settings: Settings, gold_path: str | None) -> None:
    """A stale stream (no order ingested for a day: warn; two days: error) is a warning in the
    flow, not a failure: gold from the CSV exports is still right."""
    logger = get_run_logger()
    if not has_streamed_orders(settings):
        logger.info("stream freshness: no streamed orders yet, nothing to check")
        return
    freshness = stream_freshness(settings, gold_path)
    if freshness["status"] == "pass":
        logger.info("stream freshness: pass (last order ingested %s h ago)", freshness.get("age_hours"))
        return
    logger.warning("stream freshness: %s: stream_orders is stale (%s)", freshness["status"], freshness)
    create_markdown_artifact(
        key="stream-freshness",
        markdown=f"**Stream freshness: {freshness['status']}** (warn after 1 day, error after 2)\n\n`{freshness}`",
        description="dbt source freshness on silver.stream_orders",
    )


def has_streamed_orders(settings: Settings) -> bool:
    """Locally, an empty stream_orders has no freshness to check (other targets: ask dbt)."""
    return settings.dbt_target != "local" or row_count(Lake(settings.lake).uri("silver", STREAM_ORDERS)) > 0


def report_unknown_members(unknown: dict[str, int]) -> None:
    """Order lines under the unknown member are counted, in the log and as an artifact."""
    logger = get_run_logger()
    if not any(unknown.values()):
        logger.info("fact_orders: every order line has its customer and product")
        return
    logger.warning(
        "fact_orders: %d order lines point to the unknown customer, %d to the unknown product (key '%s'; "
        "their customer_id and product_number are kept in fact_orders)",
        unknown["unknown_customer"], unknown["unknown_product"], UNKNOWN_MEMBER_KEY,
    )
    create_markdown_artifact(
        key="unknown-members",
        markdown=(
            "| order lines pointing to | count |\n| --- | --- |\n"
            f"| the unknown customer | {unknown['unknown_customer']} |\n| the unknown product | {unknown['unknown_product']} |\n\n"
            f"`select * from fact_orders where customer_key = '{UNKNOWN_MEMBER_KEY}' or product_key = '{UNKNOWN_MEMBER_KEY}'`"
        ),
        description="Order lines whose customer or product is not (or no longer) in the dimension",
    )
