"""Gold with dbt: build the dimensional models and run their tests through PrefectDbtRunner,
so that every model and test is a task (and an asset) in the Prefect UI.

dbt gets what varies per run as arguments, never through this process's environment: the
lake as the var ``lake`` (where the sources' Delta tables are), the log and target paths as
options, and, for the local target, the DuckDB file to build in a profiles.yml written for
the run (the project's own, with that one path replaced: a profile cannot read vars).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import yaml

from logistics_pipeline.tasks.errors import PipelineError, one_line
from logistics_pipeline.tasks.settings import DBT_PROJECT_DIR, Settings

if TYPE_CHECKING:
    from prefect_dbt import PrefectDbtRunner

GOLD_SCHEMA = "main"
GOLD_TABLES = ("dim_customers", "dim_products", "fact_orders")
STREAM_SOURCE = "source:silver.stream_orders"
UNKNOWN_MEMBER_KEY = "-1"
UNKNOWN_MEMBERS_TEST = "assert_unknown_members_within_limit"
FAILED_STATUSES = {"error", "fail", "runtime error"}


def dbt_vars(settings: Settings) -> dict[str, object]:
    """The project's vars: the lake, and the limit on order lines under the unknown member when one is set."""
    limit = {} if settings.max_unknown_lines is None else {"max_unknown_member_lines": settings.max_unknown_lines}
    return {"lake": settings.lake, **limit}


def work_dir(settings: Settings) -> Path:
    """Where dbt's compiled files, logs and per-run profile go: the lake, not the repository."""
    return Path(settings.lake) / "_dbt" if settings.is_local_lake else Path(".dbt-work")


def profiles_dir(settings: Settings, gold_path: str | None) -> Path:
    """The project's profiles.yml, or for a local build a copy whose DuckDB path is ``gold_path``."""
    if gold_path is None or settings.dbt_target != "local":
        return DBT_PROJECT_DIR
    profiles = yaml.safe_load((DBT_PROJECT_DIR / "profiles.yml").read_text())
    profiles["dbt_gold"]["outputs"]["local"]["path"] = gold_path
    folder = Path(gold_path).parent / "profile"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "profiles.yml").write_text(yaml.safe_dump(profiles, sort_keys=False))
    return folder


def dbt_runner(settings: Settings, gold_path: str | None) -> PrefectDbtRunner:
    """A runner for this run's profile.

    dbt is imported here, not at module level: it takes seconds, and a run whose gold is
    up to date never needs it."""
    from prefect_dbt import PrefectDbtSettings

    from logistics_pipeline.tasks.gold.dbt_logs import NamedDbtRunner, name_dbt_lines

    name_dbt_lines()
    return NamedDbtRunner(
        settings=PrefectDbtSettings(
            project_dir=DBT_PROJECT_DIR,
            profiles_dir=profiles_dir(settings, gold_path),
            target_path=work_dir(settings) / "target",
        ),
        raise_on_failure=False,
    )


class GoldTestFailure(PipelineError):
    """`dbt build` failed a model or a test; the message names each one."""


def dbt_build(settings: Settings, gold_path: str | None = None, full_refresh: bool = False, on_model: Callable[[Any], None] | None = None) -> None:
    """`dbt build` (models, then their tests) into ``gold_path`` (local target); raises
    ``GoldTestFailure`` naming each failed model or test in one line. ``on_model`` is called
    after each model with prefect-dbt's hook context (its ``node`` and ``owner``, the runner)."""
    args = ["build", "--target", settings.dbt_target]
    if full_refresh:
        args.append("--full-refresh")
    result = invoke(settings, args, gold_path, on_model)
    if result.success:
        return
    failures = [r for r in getattr(result.result, "results", None) or [] if str(getattr(r.status, "value", r.status)) in FAILED_STATUSES]
    if not failures:
        raise GoldTestFailure(f"dbt build failed: {one_line(result.exception or 'no result')}")
    raise GoldTestFailure("; ".join(describe_failure(settings, failure) for failure in failures))


def describe_failure(settings: Settings, failure: Any) -> str:
    """One clause per failed node; the unknown-member limit in the words of its setting."""
    if failure.node.name == UNKNOWN_MEMBERS_TEST:
        return (
            f"{failure.failures} order lines point to the unknown customer or product, over the limit of "
            f"{settings.max_unknown_lines} (LOGISTICS_MAX_UNKNOWN_LINES)"
        )
    message = one_line(failure.message or "")
    return f"{failure.node.resource_type} {failure.node.name} failed: {message}"


def stream_freshness(settings: Settings, gold_path: str | None = None) -> dict[str, object]:
    """`dbt source freshness` on the streamed orders: status pass, warn or error, and the age."""
    result = invoke(settings, ["source", "freshness", "--target", settings.dbt_target, "--select", STREAM_SOURCE], gold_path)
    sources = [r for r in getattr(result.result, "results", []) if str(r.node.resource_type) == "source"]
    if not sources:
        return {"status": "runtime error", "message": str(result.exception or "dbt returned no freshness result")}
    freshness = sources[0]
    return {
        "status": str(getattr(freshness.status, "value", freshness.status)),
        "max_loaded_at": str(getattr(freshness, "max_loaded_at", None)),
        "age_hours": round(getattr(freshness, "age", 0.0) / 3600, 1),
    }


def invoke(settings: Settings, args: list[str], gold_path: str | None, on_model: Callable[[Any], None] | None = None) -> Any:
    """Run dbt in-process with this run's vars, profile and paths."""
    try:
        runner = dbt_runner(settings, gold_path)
        if on_model is not None:
            runner.post_model(on_model)
        return runner.invoke(
            [*args, "--vars", json.dumps(dbt_vars(settings))],
            log_path=str(work_dir(settings) / "logs"),
            use_colors=False,  # its lines go to Prefect's log and to a file, never straight to a terminal
            use_colors_file=False,
        )
    finally:
        release_duckdb_file()


def release_duckdb_file() -> None:
    """dbt-duckdb keeps its database open in-process after a run; close it so that readers
    (and the next run) can open the file, and so that it can be published."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # another adapter
        return
    try:
        environment = DuckDBConnectionManager.env()
    except Exception:  # noqa: BLE001 - dbt-duckdb raises a bare Exception when no run created one
        return
    environment.close()
    DuckDBConnectionManager.close_all_connections()  # forgets the closed environment


def gold_row_counts(gold_path: str) -> dict[str, int]:
    """Rows per gold table in the local DuckDB file."""
    with duckdb.connect(gold_path, read_only=True) as connection:
        return {
            table: connection.execute(f"select count(*) from {GOLD_SCHEMA}.{table}").fetchone()[0]
            for table in GOLD_TABLES
        }


def unknown_member_lines(gold_path: str) -> dict[str, int]:
    """Order lines whose customer or product is the unknown member, in the local DuckDB file."""
    with duckdb.connect(gold_path, read_only=True) as connection:
        customer, product = connection.execute(
            f"select count(*) filter (where customer_key = '{UNKNOWN_MEMBER_KEY}'), "
            f"count(*) filter (where product_key = '{UNKNOWN_MEMBER_KEY}') from {GOLD_SCHEMA}.fact_orders"
        ).fetchone()
    return {"unknown_customer": customer, "unknown_product": product}
