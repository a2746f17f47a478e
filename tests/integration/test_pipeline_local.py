"""The parent flow on generated data: every layer written, counts reconcile, reruns are no-ops."""

from __future__ import annotations

import json
import time

import polars as pl
import pytest

from logistics_pipeline.tasks.core.silver import SILVER_TABLES
from tests.lake_snapshot import gold_frame, snapshot, versions

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture(scope="module")
def pipeline_run(generated_sources, tmp_path_factory, prefect_server):
    from logistics_pipeline.flows.pipeline import logistics_pipeline

    lake = tmp_path_factory.mktemp("lake")
    summary = logistics_pipeline(source_dir=str(generated_sources), lake=str(lake))
    return lake, summary


def test_every_layer_is_written(pipeline_run):
    lake, summary = pipeline_run
    for table in SILVER_TABLES:
        assert (lake / "bronze" / table.bronze / "_delta_log").is_dir()
        assert (lake / "silver" / table.name / "_delta_log").is_dir()
        assert (lake / "quarantine" / table.name / "_delta_log").is_dir()
    assert summary["gold"] == str(lake / "gold.duckdb")
    assert set(summary["gold_rows"]) == {"dim_customers", "dim_products", "fact_orders"}
    assert all(rows > 0 for rows in summary["gold_rows"].values())


@pytest.mark.parametrize("table", SILVER_TABLES, ids=lambda t: t.name)
def test_counts_reconcile(pipeline_run, table):
    """bronze rows = silver rows + quarantined + merged duplicates, checked on the tables."""
    lake, _ = pipeline_run
    bronze = pl.read_delta(str(lake / "bronze" / table.bronze))
    silver = pl.read_delta(str(lake / "silver" / table.name))
    quarantine = pl.read_delta(str(lake / "quarantine" / table.name))
    accepted = bronze.filter(~pl.col("_line").is_in(quarantine["_line"].implode()))
    merged = accepted.height - silver.height
    assert bronze.height == silver.height + quarantine.height + merged
    assert merged >= 0
    assert quarantine["_rule"].null_count() == 0
    assert set(quarantine["_rule"]) <= {rule.name for rule in table.rules}
    assert silver.select(table.merge_key).is_duplicated().sum() == 0


def test_generated_dirt_is_handled(pipeline_run):
    lake, _ = pipeline_run
    quarantined = pl.read_delta(str(lake / "quarantine" / "crm_cust_info"))
    assert "missing_customer_id" in quarantined["_rule"].to_list()
    customers = pl.read_delta(str(lake / "silver" / "crm_cust_info"))
    assert set(customers["cst_gndr"]) <= {"Female", "Male", "n/a"}
    assert customers.filter(pl.col("cst_firstname") != pl.col("cst_firstname").str.strip_chars()).height == 0


def test_gold_contract(pipeline_run):
    lake, summary = pipeline_run
    columns = {
        "dim_customers": ["customer_key", "customer_id", "customer_number", "first_name", "last_name", "country", "marital_status", "gender", "birthdate", "create_date"],
        "dim_products": ["product_key", "product_id", "product_number", "product_name", "category_id", "category", "subcategory", "maintenance", "cost", "product_line", "start_date"],
        "fact_orders": [
            "order_number", "product_key", "customer_key", "product_number", "customer_id", "order_date", "shipping_date", "due_date",
            "sales_amount", "quantity", "price", "source",
        ],
    }
    for table, expected in columns.items():
        frame = gold_frame(lake, f"select * from {table}")
        assert frame.columns[: len(expected)] == expected
    silver_sales = pl.read_delta(str(lake / "silver" / "crm_sales_details")).height
    assert summary["gold_rows"]["fact_orders"] == silver_sales


def test_second_run_changes_nothing(pipeline_run, generated_sources):
    from logistics_pipeline.flows.pipeline import logistics_pipeline

    lake, _ = pipeline_run
    before_versions, before = versions(lake), snapshot(lake)
    logistics_pipeline(source_dir=str(generated_sources), lake=str(lake))
    assert versions(lake) == before_versions, "a rerun with the same input wrote a new Delta version"
    assert snapshot(lake) == before


def test_gold_rebuilds_only_when_it_or_its_inputs_changed(pipeline_run):
    """A rerun on unchanged silver skips `dbt build` (gold.duckdb is not rewritten); a deleted
    gold database, or a write to it after the build, is rebuilt with the same content."""
    import duckdb

    from logistics_pipeline.flows.gold import dbt_gold

    lake, summary = pipeline_run
    gold = lake / "gold.duckdb"
    built = gold.stat().st_mtime_ns
    assert dbt_gold(lake=str(lake)) == summary["gold_rows"]
    assert gold.stat().st_mtime_ns == built, "dbt rebuilt gold although silver and the project were unchanged"

    with duckdb.connect(str(gold)) as connection:  # someone writes to gold: it is no longer what dbt built
        connection.execute("delete from main.dim_products")
    assert dbt_gold(lake=str(lake)) == summary["gold_rows"]

    gold.unlink()
    assert dbt_gold(lake=str(lake)) == summary["gold_rows"]


def test_the_project_digest_follows_every_model_and_test_file(tmp_path):
    import shutil

    from logistics_pipeline.tasks.gold.state import project_digest
    from logistics_pipeline.tasks.settings import DBT_PROJECT_DIR

    project = tmp_path / "dbt_gold"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    before = project_digest(project)
    assert project_digest(project) == before
    (project / "models" / "dim_products.sql").open("a").write("\n-- changed\n")
    changed = project_digest(project)
    assert changed != before
    (project / "macros" / "new_test.sql").write_text("{% test always_true(model) %} select 1 where false {% endtest %}")
    assert project_digest(project) != changed


def test_dbt_models_are_tasks_and_the_tests_one_artifact(pipeline_run):
    """Each gold model is a Prefect task (and asset); dbt's tests run inside dbt, not as a task
    each (a task costs more than the test), and the ``gold-tests`` artifact counts them."""
    import re

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import ArtifactSort

    models = {"model dim_customers", "model dim_products", "model fact_orders"}
    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["gold-tests"])), sort=ArtifactSort.CREATED_DESC, limit=1)
        deadline = time.monotonic() + 30  # the server records task runs from their events, up to a second later
        while True:
            tasks = {run.name for run in client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[artifact.flow_run_id])))}
            if models <= tasks or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert models <= tasks
    assert not [name for name in tasks if name.startswith(("test ", "unit_test "))], tasks
    run, passed = re.match(r"\*\*(\d+) dbt tests: (\d+) pass\*\*", artifact.data).groups()
    assert run == passed and int(run) >= 60, artifact.data
    # dbt's unit tests run in CI (test_dbt_gold.py, test_gold_on_spark.py), not in a production build
    lake, _ = pipeline_run
    results = json.loads((lake / "_dbt" / "target" / "run_results.json").read_text())["results"]
    assert {r["unique_id"].split(".")[0] for r in results} == {"model", "test", "operation"}
