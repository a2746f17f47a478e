"""History and quality over time, through the real flows (Delta, dbt on DuckDB, a Prefect
server): one story on a small generated export, run twice with a customer who moves country
and one who leaves the CRM in between, then a silver run over a quality threshold, then a full
refresh of gold."""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import polars as pl
import pytest

from logistics_pipeline.tasks.core.quality_log import QUALITY_LAYER, QUALITY_TABLE, RULES_BY_TABLE
from logistics_pipeline.tasks.core.silver import SILVER_TABLES
from logistics_pipeline.tasks.core.thresholds import QualityThresholdExceeded
from logistics_pipeline.tasks.local.lake import Lake, read_table
from tests.export_changes import MOVED_TO, move_and_drop_customers

pytestmark = pytest.mark.usefixtures("prefect_server")

AS_OF_ORDER_DATE = """
    select f.order_number, f.order_date, c.country, c.version_number
    from fact_orders f
    join dim_customers_history c
        on c.customer_id = f.customer_id
        and c.valid_from <= f.order_date
        and (c.valid_to is null or f.order_date < c.valid_to)
    where f.customer_id = ?
"""


def gold(lake: Path, sql: str, *parameters: object) -> pl.DataFrame:
    with duckdb.connect(str(lake / "gold.duckdb"), read_only=True) as connection:
        connection.execute("set TimeZone = 'UTC'")
        return connection.sql(sql, params=list(parameters)).pl()


def quality_results(lake: Path) -> pl.DataFrame:
    return read_table(Lake(str(lake)).uri(QUALITY_LAYER, QUALITY_TABLE))


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    """Two pipeline runs; between them a customer moves and another leaves the CRM."""
    from logistics_pipeline.datasets.generate import generate_datasets
    from logistics_pipeline.flows.pipeline import logistics_pipeline

    work = tmp_path_factory.mktemp("history")
    export, lake = work / "export", work / "lake"
    generate_datasets(export, scale=0.02, seed=11)
    logistics_pipeline(source_dir=str(export), lake=str(lake))
    first = quality_results(lake)
    moved, left, old_country = move_and_drop_customers(export)
    logistics_pipeline(source_dir=str(export), lake=str(lake))
    second_run_at = quality_results(lake)["run_at"].max()
    return {"export": export, "lake": lake, "moved": moved, "left": left, "old_country": old_country,
            "first_run": first["run_id"].unique().item(), "second_run_at": second_run_at}


def test_a_customer_who_moved_has_two_versions_and_older_orders_keep_the_old_country(story):
    lake, moved = story["lake"], story["moved"]
    versions = gold(lake, "select * from dim_customers_history where customer_id = ? order by version_number", moved)
    assert versions["country"].to_list() == [story["old_country"], MOVED_TO]
    assert versions["is_current"].to_list() == [False, True]
    assert versions["valid_to"][0] == versions["valid_from"][1] == story["second_run_at"]
    assert versions["valid_from"][0].year == 1900  # the first version reaches back to the beginning of time

    orders = gold(lake, AS_OF_ORDER_DATE, moved)
    dated_lines = gold(lake, "select count(*) as n from fact_orders where customer_id = ? and order_date is not null", moved)["n"].item()
    assert orders.height == dated_lines > 0  # every dated order line finds exactly one version
    before = orders.filter(pl.col("order_date") < story["second_run_at"].date())
    assert before.height > 0 and set(before["country"]) == {story["old_country"]}
    assert gold(lake, "select country from dim_customers where customer_id = ?", moved)["country"].to_list() == [MOVED_TO]


def test_a_customer_who_left_the_export_keeps_a_closed_version(story):
    lake, left = story["lake"], story["left"]
    assert gold(lake, "select * from dim_customers where customer_id = ?", left).height == 0
    versions = gold(lake, "select valid_to, is_current, is_deleted from dim_customers_history where customer_id = ?", left)
    assert versions.rows() == [(story["second_run_at"], False, True)]
    history = read_table(Lake(str(lake)).uri("history", "crm_cust_info")).filter(pl.col("cst_id") == left)
    assert history.select("is_current", "is_deleted").rows() == [(False, True)]


def test_two_runs_leave_two_sets_of_quality_rows_in_the_lake_and_in_gold(story):
    lake = story["lake"]
    results = quality_results(lake)
    runs = results.group_by("run_id").agg(pl.len().alias("rows"), pl.col("table_name").n_unique().alias("tables"))
    expected_rows = sum(len(RULES_BY_TABLE[table.name]) for table in SILVER_TABLES)  # no stream in this story
    assert runs.height == 2 and set(runs["rows"]) == {expected_rows} and set(runs["tables"]) == {len(SILVER_TABLES)}
    assert all(re.fullmatch(r"[0-9a-f-]{36}", run) for run in runs["run_id"])  # the silver-layer flow run's id
    assert results.filter(pl.col("rule_quarantined") > 0).height > 0
    in_gold = gold(lake, "select run_number, run_id, table_name, rule, rule_quarantined, rule_share from silver_quality")
    assert sorted(set(in_gold["run_number"])) == [1, 2]
    assert in_gold.filter(pl.col("run_number") == 1)["run_id"].unique().item() == story["first_run"]


def test_the_silver_artifact_shows_each_rule(story):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifact = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["silver-layer"])), limit=1, sort="CREATED_DESC")[0]
    rows = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    quarantined = [row for row in rows if row["quarantined"]]
    assert quarantined and all(re.search(r"[a-z_]+ \d+ \(\d+\.\d\d%\)", row["quarantined_by_rule"]) for row in quarantined)


def test_a_threshold_below_the_share_fails_silver_naming_the_rule_and_still_records_the_run(story, monkeypatch):
    from logistics_pipeline.flows.silver import silver_layer

    lake = story["lake"]
    worst = quality_results(lake).with_columns(share=pl.col("rule_quarantined") / pl.col("rows_in")).sort("share").row(-1, named=True)
    key = f"{worst['table_name']}.{worst['rule']}"
    monkeypatch.setenv("LOGISTICS_QUALITY_FAIL_SHARE", json.dumps({key: worst["share"] / 2}))
    with pytest.raises(QualityThresholdExceeded) as raised:
        silver_layer(lake=str(lake))
    message = str(raised.value)
    assert "\n" not in message and f"rule {worst['rule']}" in message and f"{worst['share']:.2%}" in message
    assert quality_results(lake)["run_id"].n_unique() == 3

    monkeypatch.setenv("LOGISTICS_QUALITY_FAIL_SHARE", json.dumps({key: worst["share"]}))  # at the share: passes
    silver_layer(lake=str(lake))


def test_history_survives_a_full_refresh_of_gold_and_the_quality_command_shows_the_trend(story):
    from typer.testing import CliRunner

    from logistics_pipeline.flows.cli import app
    from logistics_pipeline.flows.gold import dbt_gold

    lake = story["lake"]
    dbt_gold(lake=str(lake), full_refresh=True)
    assert gold(lake, "select country from dim_customers_history where customer_id = ? order by version_number", story["moved"])["country"].to_list() == [
        story["old_country"], MOVED_TO,
    ]
    result = CliRunner().invoke(app, ["quality", "--lake", str(lake), "--runs", "3"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("last 3 silver runs (oldest first):")
    assert re.search(r"^  [a-z_]+ +(\d+\.\d\d% +){3}(steady|rising|falling)", result.output, re.MULTILINE), result.output


def test_maintenance_compacts_the_quality_results_and_keeps_the_history(story):
    from logistics_pipeline.flows.maintenance import lake_maintenance

    lake = story["lake"]
    results, history = quality_results(lake), read_table(Lake(str(lake)).uri("history", "crm_cust_info"))
    rows = {row["table"]: row for row in lake_maintenance(lake=str(lake))}
    assert rows["quality/silver"]["mode"] == "append" and rows["quality/silver"]["files_after"] == 1
    assert rows["history/crm_cust_info"]["mode"] == "overwrite"
    assert quality_results(lake).sort(pl.all()).equals(results.sort(pl.all()))
    assert read_table(Lake(str(lake)).uri("history", "crm_cust_info")).sort(pl.all()).equals(history.sort(pl.all()))


def test_a_layer_stopped_by_schema_drift_still_records_the_tables_it_built(story):
    from logistics_pipeline.flows.bronze import bronze_layer
    from logistics_pipeline.flows.silver import silver_layer
    from logistics_pipeline.tasks.core.drift import SchemaDriftError

    export, lake = story["export"], story["lake"]
    runs = quality_results(lake)["run_id"].n_unique()
    customers = export / "source_crm" / "cust_info.csv"  # create dates in another layout: a changed type
    header, *lines = customers.read_text().splitlines()
    customers.write_text("\n".join([header, *(re.sub(r",(\d{4})-(\d\d)-(\d\d)$", r",\3.\2.\1", line) for line in lines)]) + "\n")
    bronze_layer(source_dir=str(export), lake=str(lake))
    with pytest.raises(SchemaDriftError):
        silver_layer(lake=str(lake))
    results = quality_results(lake)
    latest = results.filter(pl.col("run_at") == results["run_at"].max())
    assert results["run_id"].n_unique() == runs + 1
    assert set(latest["table_name"]) == {table.name for table in SILVER_TABLES} - {"crm_cust_info"}


def test_the_quality_command_names_a_lake_without_results(tmp_path):
    from typer.testing import CliRunner

    from logistics_pipeline.flows.cli import app

    result = CliRunner().invoke(app, ["quality", "--lake", str(tmp_path)])
    assert result.exit_code == 1
    assert f"error: no quality results in {tmp_path}/quality/silver: run the silver layer first" in result.output
