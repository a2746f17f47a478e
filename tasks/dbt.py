"""Gold with dbt: build the dimensional models and run their tests through PrefectDbtRunner,
so that every model and test is a task (and an asset) in the Prefect UI."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from tasks.settings import DBT_PROJECT_DIR, Settings

if TYPE_CHECKING:
    from prefect_dbt import PrefectDbtRunner

GOLD_SCHEMA = "main"
GOLD_TABLES = ("dim_customers", "dim_products", "fact_orders")
STREAM_SOURCE = "source:silver.stream_orders"


def dbt_environment(settings: Settings) -> dict[str, str]:
    """What the dbt profile reads from the environment."""
    return {"LOGISTICS_LAKE": settings.lake}


def dbt_runner(settings: Settings) -> PrefectDbtRunner:
    """A runner whose compiled files and logs live in the lake, not in the repository.

    dbt is imported here, not at module level: it takes seconds, and a run whose gold is
    up to date never needs it."""
    from prefect_dbt import PrefectDbtRunner, PrefectDbtSettings

    work_dir = Path(settings.lake) / "_dbt" if settings.is_local_lake else Path(".dbt-work")
    os.environ["DBT_LOG_PATH"] = str(work_dir / "logs")
    return PrefectDbtRunner(
        settings=PrefectDbtSettings(
            project_dir=DBT_PROJECT_DIR,
            profiles_dir=DBT_PROJECT_DIR,
            target_path=work_dir / "target",
        ),
        raise_on_failure=True,
    )


def dbt_build(settings: Settings) -> None:
    """`dbt build` (models, then their tests); raises naming each failed model or test."""
    invoke(settings, ["build", "--target", settings.dbt_target], raise_on_failure=True)


def stream_freshness(settings: Settings) -> dict[str, object]:
    """`dbt source freshness` on the streamed orders: status pass, warn or error, and the age."""
    result = invoke(settings, ["source", "freshness", "--target", settings.dbt_target, "--select", STREAM_SOURCE], raise_on_failure=False)
    sources = [r for r in getattr(result.result, "results", []) if str(r.node.resource_type) == "source"]
    if not sources:
        return {"status": "runtime error", "message": str(result.exception or "dbt returned no freshness result")}
    freshness = sources[0]
    return {
        "status": str(getattr(freshness.status, "value", freshness.status)),
        "max_loaded_at": str(getattr(freshness, "max_loaded_at", None)),
        "age_hours": round(getattr(freshness, "age", 0.0) / 3600, 1),
    }


def invoke(settings: Settings, args: list[str], raise_on_failure: bool) -> Any:
    os.environ.update(dbt_environment(settings))
    runner = dbt_runner(settings)
    runner.raise_on_failure = raise_on_failure
    try:
        return runner.invoke(args)
    finally:
        release_duckdb_file()


def release_duckdb_file() -> None:
    """dbt-duckdb keeps its database open in-process after a run; close it so that readers
    (and the next run) can open gold.duckdb."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # another adapter
        return
    environment = DuckDBConnectionManager._ENV
    if environment is not None:
        environment.close()
        DuckDBConnectionManager.close_all_connections()


def gold_row_counts(gold_path: str) -> dict[str, int]:
    """Rows per gold table in the local DuckDB file."""
    with duckdb.connect(gold_path, read_only=True) as connection:
        return {
            table: connection.execute(f"select count(*) from {GOLD_SCHEMA}.{table}").fetchone()[0]
            for table in GOLD_TABLES
        }
