"""Every table is a Prefect asset, so lineage reads source CSV -> bronze -> silver -> gold.

Asset keys are URIs (Prefect requires a lowercase scheme and refuses spaces and
``# ? & % " ' < > [ ] { } | \\ ^ ``` ``):

    source CSV     file:///abs/datasets/source_crm/cust_info.csv
    Delta table    file:///abs/lake/bronze/crm_cust_info      (object-store lakes: s3://bucket/lake/...)
    order stream   kafka://host:9092/orders, or file:///abs/lake/landing/orders without Kafka
    dbt source     duckdb://gold/silver/crm_cust_info          (named by PrefectDbtRunner)
    gold model     duckdb://gold/main/dim_customers            (named by PrefectDbtRunner)

Gold assets come from PrefectDbtRunner: every dbt model is a materializing task whose key is
``<adapter>://<relation with dots as slashes>``, and its upstream assets are the dbt sources
it reads. The runner offers no way to rename a source's key, and the ``lake`` source plugin
really does copy each silver Delta table into ``gold.duckdb`` as ``silver.<table>``, so
:func:`link_dbt_sources` records that copy: the dbt source asset, with the silver Delta table
as its upstream. That closes the chain silver -> dbt source -> gold.

Keys are only known at run time (they hold the lake's path), so the tasks are defined with
:func:`materializes` and given their assets where they are called, with Prefect's public
``with_options``::

    ingest = ingest_source.with_options(
        assets=[table_asset(lake, "bronze", source.table)],
        asset_deps=[source_asset(source.path(source_dir))],
        refresh_cache=stale,
    )
    rows = ingest(source, source_dir, target_uri=target, ...)

Inside, a task records metadata (row counts) on its assets with :func:`record_on_assets`.

Prefect emits ``prefect.asset.materialization.succeeded`` for each asset when the task run
completes, with the upstream assets as related resources (a run that is served from the
cache emits nothing). On a Prefect Cloud workspace these build the asset graph; an
open-source server keeps them as events (Events page, ``/api/events/filter``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from prefect.assets import Asset, AssetProperties, add_asset_metadata
from prefect.cache_policies import NO_CACHE
from prefect.context import AssetContext
from prefect.tasks import MaterializingTask

from logistics_pipeline.tasks.core.contract import LANDING_ORDERS
from logistics_pipeline.tasks.local.lake import Lake

R = TypeVar("R")

TableLayer = Literal["bronze", "silver", "quarantine"]

# dbt-duckdb names the database after the file (<lake>/gold.duckdb); the local profile puts
# the models in `main` and the `lake` plugin loads the sources into schema `silver`.
DBT_ADAPTER = "duckdb"
DBT_DATABASE = "gold"
DBT_SOURCE_SCHEMA = "silver"
DBT_MODEL_SCHEMA = "main"

_REFUSED = ("\n", "\r", "\t", "\0", " ", "#", "?", "&", "%", '"', "'", "<", ">", "[", "]", "{", "}", "|", "\\", "^", "`")


def asset_key(location: str | Path) -> str:
    """The asset key of a local path or a URI: paths become absolute ``file://`` URIs, the
    scheme is lowercased, and characters Prefect refuses in keys become ``_``."""
    text = str(location)
    scheme = urlsplit(text).scheme if "://" in text else ""
    if scheme:
        key = scheme.lower() + text[len(scheme) :]
    else:
        key = "file://" + Path(text).expanduser().resolve().as_posix()
    for char in _REFUSED:
        key = key.replace(char, "_")
    return key.rstrip("/")


def source_asset(path: str | Path) -> Asset:
    """A source export (CSV file), e.g. ``file:///abs/datasets/source_crm/cust_info.csv``."""
    path = Path(path)
    return Asset(
        key=asset_key(path),
        properties=AssetProperties(name=f"{path.parent.name}/{path.name}", description="Source export (CSV) as delivered."),
    )


def table_asset(lake: str, layer: TableLayer, table: str, description: str | None = None) -> Asset:
    """A Delta table of the lake, e.g. ``file:///abs/lake/bronze/crm_cust_info``.

    ``lake`` is the lake root as the settings hold it (an absolute folder, or a URI).
    """
    location = f"{str(lake).rstrip('/')}/{layer}/{table}"
    return Asset(
        key=asset_key(location),
        properties=AssetProperties(name=f"{layer}.{table}", description=description or _LAYER_DESCRIPTIONS[layer]),
    )


_LAYER_DESCRIPTIONS: dict[str, str] = {
    "bronze": "Bronze: the source as received, every column as text, plus load metadata.",
    "silver": "Silver: typed, cleansed and deduplicated.",
    "quarantine": "Quarantine: rows a silver rule rejected, with the rule's name and the row as received.",
}


def landing_asset(lake: str) -> Asset:
    """The landing folder of JSON-lines order files (the stream without Kafka)."""
    return Asset(
        key=asset_key(Lake(str(lake).rstrip("/")).landing_orders),
        properties=AssetProperties(name=LANDING_ORDERS, description="Order messages as JSON lines, one file per produce run."),
    )


def topic_asset(bootstrap_servers: str, topic: str) -> Asset:
    """A Kafka topic, keyed by the first bootstrap server: ``kafka://host:9092/orders``."""
    first = bootstrap_servers.split(",")[0].strip()
    host = first.split("://", 1)[-1]
    return Asset(key=asset_key(f"kafka://{host}/{topic}"), properties=AssetProperties(name=f"kafka {topic}", description="Kafka topic of order events."))


def dbt_source_asset(table: str) -> Asset:
    """The dbt source ``silver.<table>`` as PrefectDbtRunner names it (local duckdb target)."""
    return Asset(key=f"{DBT_ADAPTER}://{DBT_DATABASE}/{DBT_SOURCE_SCHEMA}/{table}")


def gold_asset(model: str) -> Asset:
    """A gold model as PrefectDbtRunner names it (local duckdb target)."""
    return Asset(key=f"{DBT_ADAPTER}://{DBT_DATABASE}/{DBT_MODEL_SCHEMA}/{model}")


# --- tasks that materialize assets -------------------------------------------------------------


def materializes(**task_options: Any) -> Callable[[Callable[..., R]], MaterializingTask[..., R]]:
    """Like ``@task``, for a task whose runs materialize assets that are only known at run time
    (their keys hold the lake's path): the caller names them with Prefect's public
    ``MaterializingTask.with_options(assets=[...], asset_deps=[...])``. (``@materialize`` needs
    the assets when the task is defined.)"""

    def decorate(fn: Callable[..., R]) -> MaterializingTask[..., R]:
        return MaterializingTask(fn=fn, assets=[], **task_options)

    return decorate


def record_on_assets(metadata: dict[str, Any]) -> None:
    """Record ``metadata`` (row counts, say) on every asset the current task run materializes;
    nothing outside such a run (``task.fn()`` in a unit test)."""
    context = AssetContext.get()
    for asset in context.downstream_assets if context is not None else ():
        add_asset_metadata(asset, metadata)


@materializes(task_run_name="dbt-source-{table}", cache_policy=NO_CACHE, materialized_by="dbt-duckdb")
def present_to_dbt(table: str) -> str:
    return table


def link_dbt_sources(lake: str, tables: Iterable[str]) -> None:
    """Record, for each silver table, the dbt source that reads it (``duckdb://gold/silver/<table>``)
    with the silver Delta table as its upstream. Call it in the gold flow, before dbt runs,
    for the local (duckdb) target."""
    for table in tables:
        present_to_dbt.with_options(assets=[dbt_source_asset(table)], asset_deps=[table_asset(lake, "silver", table)])(table)
