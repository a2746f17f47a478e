"""Gold with dbt: build the dimensional models and run their tests through PrefectDbtRunner,
so that every model and test is a task (and an asset) in the Prefect UI.

dbt gets what varies per run as arguments: the lake as the var ``lake`` (where the sources'
Delta tables are), the log and target paths as options, for the local target the DuckDB file
to build in a profiles.yml written for the run (the project's own, with that one path
replaced), and for the databricks target the warehouse, catalog and schema as vars.

The one exception is how the databricks target signs in: the credentials resolved for the
Databricks jobs (block or environment, ``tasks.databricks.credentials``) reach dbt as
environment variables, the only place a profile's ``env_var()`` reads, set for the dbt call
and removed after it. The secrets go under ``DBT_ENV_SECRET_*`` names, which dbt scrubs from
its logs; no file (profile, logs, target) ever holds them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import yaml

from logistics_pipeline.tasks.errors import PipelineError, one_line
from logistics_pipeline.tasks.gold.lake_views import lake_views
from logistics_pipeline.tasks.gold.parsed_project import parsed_manifest
from logistics_pipeline.tasks.settings import DBT_PROJECT_DIR, Settings

if TYPE_CHECKING:
    from dbt.contracts.graph.manifest import Manifest
    from prefect_dbt import PrefectDbtRunner

GOLD_FILE = "gold.duckdb"
PARSE_DATABASE = f"parse-only/{GOLD_FILE}"
"""The local target's DuckDB file while parsing for every lake (``tasks.gold.parsed_project``):
dbt never opens it, and dbt-duckdb names the database after the file, as gold's (``gold``)."""
GOLD_SCHEMA = "main"
GOLD_TABLES = ("dim_customers", "dim_products", "fact_orders")
STREAM_SOURCE = "source:silver.stream_orders"
UNKNOWN_MEMBER_KEY = "-1"
UNKNOWN_MEMBERS_TEST = "assert_unknown_members_within_limit"
FAILED_STATUSES = {"error", "fail", "runtime error"}
DBT_STOPPED = "Failed to invoke dbt command"


def dbt_vars(settings: Settings) -> dict[str, object]:
    """The project's vars: the lake, the limit on order lines under the unknown member when one
    is set, and for the databricks target where gold goes (the profile reads these vars)."""
    limit = {} if settings.max_unknown_lines is None else {"max_unknown_member_lines": settings.max_unknown_lines}
    return {"lake": settings.lake, **limit, **databricks_vars(settings)}


def target_type(settings: Settings) -> str | None:
    """The adapter of the run's dbt target (``duckdb``, ``databricks``, ``spark``) in profiles.yml."""
    profiles = yaml.safe_load((DBT_PROJECT_DIR / "profiles.yml").read_text())
    return (profiles["dbt_gold"]["outputs"].get(settings.dbt_target) or {}).get("type")


def databricks_vars(settings: Settings) -> dict[str, str]:
    """For the databricks target: the SQL warehouse, and the catalog and schema the jobs write
    silver to (gold goes next to it). Nothing for other targets."""
    if target_type(settings) != "databricks":
        return {}
    databricks = settings.databricks
    if not databricks.http_path:
        raise PipelineError(
            "gold on Databricks (dbt target databricks) needs a SQL warehouse: set DATABRICKS_HTTP_PATH "
            "(its HTTP path, e.g. /sql/1.0/warehouses/1234abcd)"
        )
    return {"databricks_http_path": databricks.http_path, "databricks_catalog": databricks.catalog, "databricks_schema": databricks.schema_name}


def dbt_environment(settings: Settings) -> dict[str, str]:
    """For the databricks target: the workspace host (bare: dbt-databricks wants no https://) and
    the sign-in, a token or a service principal (OAuth M2M; with a tenant, Microsoft Entra ID),
    resolved as for the jobs, under the names profiles.yml reads. Nothing for other targets."""
    if target_type(settings) != "databricks":
        return {}
    # Imported here: databricks-sdk takes seconds to import, and only this target needs it.
    from logistics_pipeline.tasks.databricks.credentials import resolve_credentials

    auth = resolve_credentials(settings.databricks)
    if auth.token:
        return {"DBT_HOST": auth.host, "DBT_ENV_SECRET_DATABRICKS_TOKEN": auth.token}
    tenant = {"ARM_TENANT_ID": auth.tenant_id} if auth.tenant_id else {}  # read by databricks-sdk inside dbt-databricks
    return {
        "DBT_HOST": auth.host, "DBT_DATABRICKS_CLIENT_ID": auth.client_id or "",
        "DBT_ENV_SECRET_DATABRICKS_CLIENT_SECRET": auth.client_secret or "", **tenant,
    }


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in this process's environment for the block, then what was there before.
    dbt runs in-process and a profile's ``env_var()`` reads only the environment. One dbt call
    at a time per process, as dbt itself requires (its flags and adapters are process-wide)."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def work_dir(settings: Settings) -> Path:
    """Where dbt's compiled files, logs and per-run profile go: the lake, not the repository."""
    return Path(settings.lake) / "_dbt" if settings.is_local_lake else Path(".dbt-work")


def is_local_build(settings: Settings, gold_path: str | None) -> bool:
    """Whether dbt builds into the DuckDB file ``gold_path`` (the local target, with a file given)."""
    return gold_path is not None and settings.dbt_target == "local"


def profile_text(settings: Settings, gold_path: str | None) -> str:
    """The project's profiles.yml, for a local build with ``gold_path`` as its DuckDB file."""
    text = (DBT_PROJECT_DIR / "profiles.yml").read_text()
    if not is_local_build(settings, gold_path):
        return text
    profiles = yaml.safe_load(text)
    profiles["dbt_gold"]["outputs"]["local"]["path"] = gold_path
    return yaml.safe_dump(profiles, sort_keys=False)


def profiles_dir(settings: Settings, gold_path: str | None) -> Path:
    """The project's profiles.yml, or for a local build a copy next to ``gold_path`` with it as its DuckDB file."""
    if not is_local_build(settings, gold_path):
        return DBT_PROJECT_DIR
    folder = Path(gold_path).parent / "profile"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "profiles.yml").write_text(profile_text(settings, gold_path))
    return folder


def project_manifest(settings: Settings, variables: dict[str, object]) -> Manifest | None:
    """The project parsed for this target and these vars, once for every lake (``tasks.gold.parsed_project``)."""
    return parsed_manifest(settings.dbt_target, variables, profile_text(settings, PARSE_DATABASE))


def dbt_runner(settings: Settings, gold_path: str | None, variables: dict[str, object]) -> PrefectDbtRunner:
    """A runner for this run's profile, on the project as parsed for every lake
    (``tasks.gold.parsed_project``; when that parse fails, dbt parses for this command itself).

    dbt is imported here, not at module level: it takes seconds, and a run whose gold is
    up to date never needs it."""
    from prefect_dbt import PrefectDbtSettings

    from logistics_pipeline.tasks.gold.dbt_logs import NamedDbtRunner, name_dbt_lines

    name_dbt_lines()
    return NamedDbtRunner(
        manifest=project_manifest(settings, variables),
        settings=PrefectDbtSettings(
            project_dir=DBT_PROJECT_DIR,
            profiles_dir=profiles_dir(settings, gold_path),
            target_path=work_dir(settings) / "target",
        ),
        raise_on_failure=False,
    )


class GoldTestFailure(PipelineError):
    """`dbt build` failed a model or a test; the message names each one."""


def dbt_build(
    settings: Settings, gold_path: str | None = None, full_refresh: bool = False, on_model: Callable[[Any], None] | None = None,
) -> dict[str, str]:
    """`dbt build` (models, then their tests) into ``gold_path`` (local target); returns each
    test's status (``test_statuses``), or raises ``GoldTestFailure`` naming each failed model or
    test in one line. ``on_model`` is called after each model with prefect-dbt's hook context
    (its ``node`` and ``owner``, the runner)."""
    # dbt's unit tests check the models' SQL on fixed inputs, so a production build learns
    # nothing from them that the project's CI did not (dbt's own advice: "Excluding unit tests
    # from production builds"); `make test` and a hand-run `dbt build` run them.
    args = ["build", "--target", settings.dbt_target, "--exclude-resource-type", "unit_test"]
    if full_refresh:
        args.append("--full-refresh")
    result = invoke(settings, args, gold_path, on_model)
    if result.success:
        return test_statuses(result)
    failures = [r for r in node_results(result) if status_of(r) in FAILED_STATUSES]
    if not failures:
        raise GoldTestFailure(f"dbt build failed: {one_line(result.exception or 'no result')}")
    raise GoldTestFailure("; ".join(describe_failure(settings, failure) for failure in failures))


def node_results(result: Any) -> list[Any]:
    return list(getattr(result.result, "results", None) or [])


def status_of(node_result: Any) -> str:
    return str(getattr(node_result.status, "value", node_result.status))


def test_statuses(result: Any) -> dict[str, str]:
    """``<test kind> <name>``: pass, warn, fail or error, for each data and unit test dbt ran
    (tests are not Prefect tasks: see ``tasks.gold.dbt_logs.TASK_NODE_TYPES``)."""
    return {
        f"{r.node.resource_type} {r.node.name}": status_of(r)
        for r in node_results(result) if str(r.node.resource_type) in {"test", "unit_test"}
    }


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
    """Run dbt in-process with this run's vars, profile, paths, (local target) lake views and
    (databricks target) sign-in."""
    variables, env = dbt_vars(settings), dbt_environment(settings)
    with lake_views_for(settings, gold_path):  # dropped after dbt has closed the file
        try:
            with environment(env):  # the parse renders the profile too
                runner = dbt_runner(settings, gold_path, variables)
                if on_model is not None:
                    runner.post_model(on_model)
                return runner.invoke(
                    [*args, "--vars", json.dumps(variables)],
                    log_path=str(work_dir(settings) / "logs"),
                    use_colors=False,  # its lines go to Prefect's log and to a file, never straight to a terminal
                    use_colors_file=False,
                )
        except ValueError as error:
            # prefect-dbt's way of saying dbt itself stopped (not a model or a test): a profile,
            # connection or compilation error, after the command line.
            if not str(error).startswith(DBT_STOPPED):
                raise
            reason = str(error).partition("': ")[2] or str(error)  # what follows the quoted command line
            raise GoldTestFailure(f"dbt {args[0]} failed: {one_line(reason)}") from error
        finally:
            release_duckdb_file()


def lake_views_for(settings: Settings, gold_path: str | None) -> AbstractContextManager[None]:
    """For a local build, the lake's tables as views in the file dbt runs on (``tasks.gold.lake_views``)."""
    if not is_local_build(settings, gold_path):
        return nullcontext()
    return lake_views(gold_path, settings.lake)


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
