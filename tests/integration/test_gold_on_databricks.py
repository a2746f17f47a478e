"""Gold on Databricks, as far as this machine can take it: dbt-databricks installed, the
`databricks` target of dbt_gold/profiles.yml parsed and compiled without a workspace, and the
credentials of the Databricks jobs (block or environment) reaching dbt-databricks' own sign-in
without landing in any file.

What a workspace alone can prove (a SQL warehouse running the models) is not tried: dbt
connects at the start of `compile` to fill its relation cache, so the compile here runs with
``--no-populate-cache``; and unit tests are compiled only when they run (they read the
model's columns from the warehouse). The service principal signs in against the fake
workspace (tests/fake_databricks.py: OAuth discovery and token endpoints, over HTTPS).
"""

from __future__ import annotations

import json
import os
import shlex
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from dbt.adapters.factory import load_plugin
from dbt.cli.main import cli, dbtRunner
from dbt.config.profile import Profile
from dbt.config.renderer import ProfileRenderer
from dbt_common.context import set_invocation_context

from logistics_pipeline.tasks.databricks.settings import DatabricksSettings
from logistics_pipeline.tasks.errors import PipelineError
from logistics_pipeline.tasks.gold.dbt import (
    GOLD_TABLES,
    GoldTestFailure,
    dbt_build,
    dbt_environment,
    dbt_vars,
    environment,
    invoke,
    work_dir,
)
from logistics_pipeline.tasks.settings import DBT_PROJECT_DIR, Settings
from tests.bundle import load_bundle
from tests.fake_databricks import FakeDatabricks

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "dapi-0123456789abcdef-secret"
CLIENT_SECRET = "dose-0123456789abcdef-secret"
WAREHOUSE = "/sql/1.0/warehouses/1234abcd"
SILVER_SOURCES = ("crm_cust_info", "crm_prd_info", "crm_sales_details", "stream_orders", "erp_cust_az12", "erp_loc_a101", "erp_px_cat_g1v2")


def without_databricks_environment(patch: pytest.MonkeyPatch) -> None:
    """Nothing from the developer's shell: what dbt sees comes from the test alone."""
    for name in list(os.environ):
        if name.startswith(("DATABRICKS_", "LOGISTICS_DATABRICKS_", "DBT_HOST", "DBT_ACCESS_TOKEN", "DBT_ENV_SECRET_", "DBT_DATABRICKS_", "ARM_")):
            patch.delenv(name)
    patch.setenv("DO_NOT_TRACK", "1")


@pytest.fixture(autouse=True)
def no_databricks_environment(monkeypatch):
    without_databricks_environment(monkeypatch)


def databricks_settings(tmp_path: Path, **credentials: str) -> Settings:
    databricks = DatabricksSettings(http_path=WAREHOUSE, catalog="lakehouse", schema_name="sales", **credentials)
    return Settings(lake=str(tmp_path / "lake"), dbt_target="databricks", databricks=databricks)


def rendered_credentials(cli_vars: dict | None = None):
    """The databricks target as dbt renders it from this process's environment and builds
    dbt-databricks' credentials from it (the steps of dbt's own profile loading)."""
    set_invocation_context(os.environ)
    profiles = yaml.safe_load((DBT_PROJECT_DIR / "profiles.yml").read_text())
    _, data = Profile.render_profile(profiles["dbt_gold"], "dbt_gold", "databricks", ProfileRenderer(cli_vars or {}))
    credentials_class = load_plugin("databricks")
    data = credentials_class.translate_aliases(data)
    credentials_class.validate(data)
    return credentials_class.from_dict(data)


def files_holding(folder: Path, *secrets: str) -> list[str]:
    return [str(path) for path in folder.rglob("*") if path.is_file() and any(s.encode() in path.read_bytes() for s in secrets)]


# --- installed --------------------------------------------------------------------------------

def test_dbt_databricks_is_installed_as_pinned():
    import dbt.adapters.databricks

    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().split() if "==" in line)
    assert version("dbt-databricks") == pins["dbt-databricks"]
    assert dbt.adapters.databricks.Plugin.adapter.type() == "databricks"


# --- parse and compile without a workspace ------------------------------------------------------

def test_parse_needs_no_credentials(tmp_path):
    result = dbtRunner().invoke([
        "parse", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR), "--target", "databricks",
        "--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs"),
    ])
    assert result.success, result.exception
    manifest = json.loads((tmp_path / "target" / "manifest.json").read_text())
    models = {node["name"]: node for node in manifest["nodes"].values() if node["resource_type"] == "model"}
    assert set(GOLD_TABLES) <= set(models)
    assert {(models[t]["database"], models[t]["schema"]) for t in GOLD_TABLES} == {("main", "logistics")}  # the profile's defaults
    relations = {source["name"]: source["relation_name"] for source in manifest["sources"].values() if source["source_name"] == "silver"}
    assert relations == {name: f"`main`.`logistics`.`silver_{name}`" for name in SILVER_SOURCES}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """`dbt compile --no-populate-cache` through the pipeline's own invoke (its vars, its
    environment), with a token and a host written with https://. Nothing is contacted: a
    token needs no sign-in while the profile is read, and no cache means no connection."""
    tmp_path = tmp_path_factory.mktemp("compile")
    with pytest.MonkeyPatch.context() as patch:
        without_databricks_environment(patch)
        settings = databricks_settings(tmp_path, host="https://dbc-1234abcd-5678.cloud.databricks.com/", token=TOKEN)
        result = invoke(settings, ["compile", "--no-populate-cache", "--target", "databricks"], None)
        assert result.success, result.exception
        yield settings, result


def test_compile_writes_every_model_and_data_test_into_the_jobs_schema(compiled):
    settings, result = compiled
    statuses = {r.node.unique_id: str(r.status) for r in result.result.results}
    assert {node for node in statuses if node.startswith("model.")} >= {f"model.dbt_gold.{t}" for t in GOLD_TABLES}
    assert sum(node.startswith("test.") for node in statuses) >= 20
    assert set(statuses.values()) == {"success"}
    compiled_fact = (work_dir(settings) / "target" / "compiled" / "dbt_gold" / "models" / "fact_orders.sql").read_text()
    # silver where the jobs wrote it (LOGISTICS_DATABRICKS_CATALOG / _SCHEMA), the dimensions next to it
    assert "`lakehouse`.`sales`.`silver_crm_sales_details`" in compiled_fact
    assert "`lakehouse`.`sales`.`silver_stream_orders`" in compiled_fact
    assert "`lakehouse`.`sales`.`dim_customers`" in compiled_fact


def test_compile_leaves_no_secret_and_no_variable_behind(compiled):
    settings, _ = compiled
    assert files_holding(Path(settings.lake), TOKEN) == []
    assert TOKEN not in (DBT_PROJECT_DIR / "profiles.yml").read_text()
    assert not [name for name in os.environ if name.startswith(("DBT_ENV_SECRET_", "DBT_HOST"))]
    logs = (work_dir(settings) / "logs" / "dbt.log").read_text()
    assert "Concurrency: 4 threads (target='databricks')" in logs


# --- the same credentials as the jobs ---------------------------------------------------------

def test_a_token_and_a_host_with_https_reach_dbt_databricks(tmp_path):
    settings = databricks_settings(tmp_path, host="https://dbc-1234abcd-5678.cloud.databricks.com/", token=TOKEN)
    with environment(dbt_environment(settings)):
        credentials = rendered_credentials(dbt_vars(settings))
    assert credentials.host == "dbc-1234abcd-5678.cloud.databricks.com"
    assert (credentials.http_path, credentials.database, credentials.schema) == (WAREHOUSE, "lakehouse", "sales")
    assert (credentials.token, credentials.auth_type) == (TOKEN, None)
    assert credentials.authenticate().header_factory() == {"Authorization": f"Bearer {TOKEN}"}


def test_a_service_principal_signs_in_through_dbt_databricks(tmp_path, monkeypatch):
    """OAuth M2M: dbt-databricks asks the workspace for its token endpoint and trades the
    client id and secret for an access token, which the fake hands out only for the right pair."""
    with FakeDatabricks(token="unused", client_id="sp-0001", client_secret=CLIENT_SECRET) as fake:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", fake.ca_file)
        settings = databricks_settings(tmp_path, host=f"https://{fake.host}", client_id="sp-0001", client_secret=CLIENT_SECRET)
        with environment(dbt_environment(settings)):
            credentials = rendered_credentials(dbt_vars(settings))
            headers = credentials.authenticate().header_factory()
        assert (credentials.host, credentials.auth_type, credentials.client_id) == (fake.host, "oauth", "sp-0001")
        assert headers == {"Authorization": f"Bearer {fake.access_token}"}
        assert len(fake.sent("POST", "/oidc/v1/token")) == 1


def test_credentials_from_a_saved_block(tmp_path, prefect_server):
    from prefect_databricks import DatabricksCredentials

    DatabricksCredentials(databricks_instance="https://adb-1234.5.azuredatabricks.net", token=TOKEN).save("gold-on-databricks", overwrite=True)
    settings = databricks_settings(tmp_path, credentials_block="gold-on-databricks")
    with environment(dbt_environment(settings)):
        credentials = rendered_credentials(dbt_vars(settings))
    assert (credentials.host, credentials.token) == ("adb-1234.5.azuredatabricks.net", TOKEN)


def test_without_credentials_or_a_warehouse_gold_stops_in_one_line(tmp_path):
    with pytest.raises(PipelineError, match="needs Databricks credentials") as missing:
        invoke(databricks_settings(tmp_path), ["parse", "--target", "databricks"], None)
    settings = Settings(lake=str(tmp_path / "lake"), dbt_target="databricks", databricks=DatabricksSettings(token=TOKEN, host="h.example"))
    with pytest.raises(PipelineError, match="DATABRICKS_HTTP_PATH") as no_warehouse:
        dbt_build(settings)
    assert "\n" not in str(missing.value) + str(no_warehouse.value)


@pytest.mark.parametrize("sign_in", ["token", "service principal"])
def test_a_failed_build_keeps_the_secrets_out_of_files_logs_and_the_error(tmp_path, monkeypatch, sign_in):
    """A real `dbt build` against the fake workspace: dbt-databricks signs in (a service
    principal: at the fake's OAuth endpoints), then cannot open a SQL session there (the fake
    has no SQL warehouse), and the build fails in one line. No secret is in that line, the
    environment afterwards, or any file dbt wrote."""
    with FakeDatabricks(token=TOKEN, client_id="sp-0001", client_secret=CLIENT_SECRET) as fake:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", fake.ca_file)
        credentials = {"token": TOKEN} if sign_in == "token" else {"client_id": "sp-0001", "client_secret": CLIENT_SECRET}
        settings = databricks_settings(tmp_path, host=f"https://{fake.host}/", **credentials)
        with pytest.raises(GoldTestFailure) as failure:
            dbt_build(settings)
        if sign_in == "service principal":
            assert fake.sent("GET", "/oidc/.well-known/oauth-authorization-server")
    message = str(failure.value)
    assert message.startswith("dbt build failed: ") and "\n" not in message
    assert TOKEN not in message and CLIENT_SECRET not in message
    assert (work_dir(settings) / "logs" / "dbt.log").is_file()
    assert files_holding(tmp_path, TOKEN, CLIENT_SECRET) == []
    assert not [name for name in os.environ if name.startswith(("DBT_ENV_SECRET_", "DBT_HOST", "DBT_DATABRICKS_"))]


# --- the bundle's gold task ---------------------------------------------------------------------

def test_the_bundles_dbt_task_runs_on_what_databricks_gives_it(tmp_path, monkeypatch):
    """The bundle's gold command, as dbt parses it, with what a Databricks dbt task sets (the
    run_as identity's DBT_ACCESS_TOKEN and the workspace's DBT_HOST): dbt accepts its flags, and
    the profile signs in with that token to the warehouse, catalog and schema of its --vars."""
    bundle = load_bundle("prod", {"warehouse_id": "1234abcd", "kafka_bootstrap_servers": "broker-1:9092", "service_principal": "sp"})
    (gold,) = [t["dbt_task"] for t in bundle["resources"]["jobs"]["logistics_pipeline"]["tasks"] if t["task_key"] == "gold"]
    (command,) = gold["commands"]
    arguments = shlex.split(command)
    assert arguments[:2] == ["dbt", "build"]
    projects = ["--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR / gold["profiles_directory"])]
    cli.commands["build"].make_context("build", [*arguments[2:], *projects])  # `dbt build` takes every flag it is given
    # a production build leaves dbt's unit tests out; the flag is build's own, so parse goes without it
    excluded = arguments.index("--exclude-resource-type")
    assert arguments[excluded + 1] == "unit_test"
    monkeypatch.setenv("DBT_HOST", "dbc-1234abcd-5678.cloud.databricks.com")
    monkeypatch.setenv("DBT_ACCESS_TOKEN", TOKEN)
    result = dbtRunner().invoke([
        "parse", *arguments[2:excluded], *arguments[excluded + 2:], *projects,
        "--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs"),
    ])
    assert result.success, result.exception
    credentials = rendered_credentials(yaml.safe_load(arguments[arguments.index("--vars") + 1]))
    assert (credentials.host, credentials.token, credentials.auth_type) == ("dbc-1234abcd-5678.cloud.databricks.com", TOKEN, None)
    assert (credentials.http_path, credentials.database, credentials.schema) == ("/sql/1.0/warehouses/1234abcd", "main", "logistics")
    assert files_holding(tmp_path, TOKEN) == []
