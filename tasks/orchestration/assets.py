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
it reads. The runner offers no way to rename a source's key, and dbt-duckdb's delta plugin
really does copy each silver Delta table into ``gold.duckdb`` as ``silver.<table>``, so
:func:`link_dbt_sources` records that copy: the dbt source asset, with the silver Delta table
as its upstream. That closes the chain silver -> dbt source -> gold.

Keys are only known at run time (they hold the lake's path), so a plain ``@task`` is turned
into a materializing one where it is called, with :func:`materializing`::

    ingest = materializing(
        ingest_source.with_options(refresh_cache=stale),
        [table_asset(lake, "bronze", source.table)],
        asset_deps=[source_asset(source.path(source_dir))],
        metadata=lambda rows: {"rows": rows},
    )
    rows = ingest(source, source_dir, target_uri=target, ...)

Prefect emits ``prefect.asset.materialization.succeeded`` for each asset when the task run
completes, with the upstream assets as related resources (a run that is served from the
cache emits nothing). On a Prefect Cloud workspace these build the asset graph; an
open-source server keeps them as events (Events page, ``/api/events/filter``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from prefect import task
from prefect.assets import Asset, AssetProperties, add_asset_metadata
from prefect.cache_policies import NO_CACHE
from prefect.context import AssetContext
from prefect.tasks import MaterializingTask, Task

R = TypeVar("R")

TableLayer = Literal["bronze", "silver", "quarantine"]

# dbt-duckdb names the database after the file (<lake>/gold.duckdb); the local profile puts
# the models in `main` and the delta plugin loads the sources into schema `silver`.
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
        key=asset_key(f"{str(lake).rstrip('/')}/landing/orders"),
        properties=AssetProperties(name="landing/orders", description="Order messages as JSON lines, one file per produce run."),
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


# --- marking task runs as materializations -------------------------------------------------

# Task.__init__ parameters stored under another attribute name (as in MaterializingTask.with_options).
_ATTRIBUTE = {
    "on_completion": "on_completion_hooks",
    "on_failure": "on_failure_hooks",
    "on_running": "on_running_hooks",
    "on_rollback": "on_rollback_hooks",
    "on_commit": "on_commit_hooks",
    "persist_result": "_user_persist_result",
    "cache_policy": "_user_cache_policy",
}


def _task_options(task_: Task[Any, Any]) -> dict[str, Any]:
    """Every option of ``task_`` (name, retries, cache key function, ...), as Task.__init__ takes them."""
    options: dict[str, Any] = {}
    for name in inspect.signature(Task.__init__).parameters:
        if name in ("self", "fn"):
            continue
        value = getattr(task_, _ATTRIBUTE.get(name, name))
        options[name] = list(value) if name in _ATTRIBUTE and name.startswith("on_") else value
    return options


def materializing(
    task_: Task[..., R],
    assets: Sequence[Asset | str],
    *,
    asset_deps: Iterable[Asset | str] = (),
    by: str | None = None,
    metadata: Callable[[R], dict[str, Any]] | None = None,
) -> MaterializingTask[..., R]:
    """A copy of ``task_`` (all its options kept) whose runs materialize ``assets`` from ``asset_deps``.

    Call it where the keys are known (inside the flow) and call the result like the task.
    ``metadata`` turns the task's return value into metadata recorded on every asset (row
    counts, say). Assets produced by upstream materializing tasks whose results are passed in
    as arguments are added as upstream assets by Prefect itself.
    """
    fn = task_.fn
    if metadata is not None:
        if inspect.iscoroutinefunction(fn):
            raise TypeError("materializing(metadata=...) supports synchronous tasks only")
        original = fn

        @functools.wraps(original)
        def fn(*args: Any, **kwargs: Any) -> R:
            result = original(*args, **kwargs)
            record = metadata(result)
            for asset in assets:
                add_asset_metadata(asset, record)
            return result

    options = _task_options(task_)
    options["asset_deps"] = [*(options.get("asset_deps") or []), *asset_deps] or None
    return MaterializingTask(fn=fn, assets=list(assets), materialized_by=by, **options)


def add_table_metadata(asset: Asset | str, metadata: dict[str, Any]) -> bool:
    """Record metadata on ``asset`` when called inside a task run that materializes it;
    elsewhere (``task.fn()`` in a unit test, a plain task) do nothing. Returns whether it was recorded."""
    context = AssetContext.get()
    key = asset if isinstance(asset, str) else asset.key
    if context is None or key not in {a.key for a in context.downstream_assets}:
        return False
    context.add_asset_metadata(key, metadata)
    return True


@task(task_run_name="dbt-source-{table}", cache_policy=NO_CACHE)
def _present_to_dbt(table: str) -> str:
    return table


def link_dbt_sources(lake: str, tables: Iterable[str]) -> None:
    """Record, for each silver table, the dbt source that reads it (``duckdb://gold/silver/<table>``)
    with the silver Delta table as its upstream. Call it in the gold flow, before dbt runs,
    for the local (duckdb) target."""
    for table in tables:
        link = materializing(
            _present_to_dbt,
            [dbt_source_asset(table)],
            asset_deps=[table_asset(lake, "silver", table)],
            by="dbt-duckdb",
        )
        link(table)
