"""The gold dbt project on Spark SQL (dbt-spark, session method, local PySpark + Delta) equals
the gold the DuckDB target builds, row for row.

One small generated dataset goes through the local engine (bronze, silver, and a few streamed
order lines in silver/stream_orders). ``dbt build --target local`` writes <lake>/gold.duckdb;
the same silver Delta tables are then registered in the test SparkSession's catalog as
``gold.silver_<table>`` (what the sources resolve to on non-DuckDB targets) and
``dbt build --target spark`` runs in this process, so dbt-spark's session method picks up the
fixture's SparkSession (Delta extension and catalog included). Both builds run every model and
every data test. The gold tables are compared exactly: same columns and types, same rows
(floats bit for bit, dates as dates, md5 surrogate keys as text, ``_ingested_at`` as UTC
instants). Silver is built in two runs, the second after a customer moved country and another
left the CRM export, so the history models (SCD type 2) and the quality results compared hold
versions and runs. Then both follow changed silver the same way: a CRM line removed, streamed
lines added and replaced.
"""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import polars as pl
import pytest
from dbt.cli.main import dbtRunner, dbtRunnerResult
from polars.testing import assert_frame_equal

from logistics_pipeline.tasks.core.contract import STREAM_ORDERS
from logistics_pipeline.tasks.core.quality_log import QUALITY_LAYER, QUALITY_TABLE
from logistics_pipeline.tasks.core.silver import SILVER_TABLES
from logistics_pipeline.tasks.core.stream import STREAM_ORDERS_SCHEMA
from logistics_pipeline.tasks.gold.dbt import GOLD_SCHEMA, GOLD_TABLES, release_duckdb_file
from logistics_pipeline.tasks.local.lake import Lake
from logistics_pipeline.tasks.local.store import DeltaStore
from tests.export_changes import MOVED_TO, move_and_drop_customers
from tests.local_layers import build_local_layers, write_history_and_quality

pytestmark = pytest.mark.spark

DBT_PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_gold"
SPARK_SCHEMA = "gold"  # the spark target's schema (profiles.yml)
STREAM_LOAD = datetime(2025, 11, 20, 8, 0, tzinfo=timezone.utc)
LATER_LOAD = datetime(2025, 11, 21, 8, 0, tzinfo=timezone.utc)
FIRST_RUN, SECOND_RUN = datetime(2025, 11, 1, 6, 0, tzinfo=timezone.utc), datetime(2025, 11, 15, 6, 0, tzinfo=timezone.utc)
HISTORY_MODELS = ("dim_customers_history", "dim_products_history", "silver_quality")
COMPARED = (*GOLD_TABLES, *HISTORY_MODELS)


# --- building both golds ---------------------------------------------------------------------

def build_silver(sources: Path, lake: Lake) -> tuple[int, int]:
    """The local engine's bronze and silver in two runs with their quality results, the second
    after a customer moved country and another left the CRM export; and an empty stream_orders
    (gold reads it). Returns (the customer who moved, the one who left)."""
    write_history_and_quality(lake, build_local_layers(sources, lake, FIRST_RUN), FIRST_RUN, "run-1")
    moved, left, _ = move_and_drop_customers(sources)
    write_history_and_quality(lake, build_local_layers(sources, lake, SECOND_RUN), SECOND_RUN, "run-2")
    DeltaStore(lake).create_empty_stream_orders()
    return moved, left


def stream_line(order: str, product: str, customer: int, quantity: int, price: float, event: str,
                ingested_at: datetime, order_date: date = date(2025, 11, 19)) -> dict:
    return {
        "sls_ord_num": order, "sls_prd_key": product, "sls_cust_id": customer,
        "sls_order_dt": order_date, "sls_ship_dt": order_date + timedelta(days=7),
        "sls_due_dt": order_date + timedelta(days=12),
        "sls_sales": quantity * price, "sls_quantity": quantity, "sls_price": price,
        "event_id": event, "event_time": ingested_at - timedelta(minutes=5), "_ingested_at": ingested_at,
    }


def write_stream(lake: Lake, lines: list[dict]) -> None:
    """silver stream_orders as the stream's current state: one row per (order, product)."""
    pl.DataFrame(lines, schema=STREAM_ORDERS_SCHEMA).write_delta(lake.uri("silver", STREAM_ORDERS), mode="overwrite")


def first_stream_lines(lake: Lake) -> list[dict]:
    """New orders on real products and customers, a streamed copy of a CRM line (the CRM wins),
    and lines of a customer and a product the CRM does not know (the unknown members)."""
    crm = pl.read_delta(lake.uri("silver", "crm_sales_details")).drop_nulls("sls_order_dt").sort("sls_ord_num", "sls_prd_key")
    products = pl.read_delta(lake.uri("silver", "crm_prd_info")).filter(pl.col("prd_end_dt").is_null())["prd_key"].sort()
    customers = pl.read_delta(lake.uri("silver", "crm_cust_info"))["cst_id"].sort()
    copied = crm.row(0, named=True)
    return [
        stream_line("ST-1", products[0], customers[0], 2, 12.5, "e-1", STREAM_LOAD),
        stream_line("ST-1", products[1], customers[0], 1, 3.25, "e-2", STREAM_LOAD),
        stream_line("ST-2", products[2], customers[1], 3, 99.99, "e-4", STREAM_LOAD + timedelta(seconds=1)),
        stream_line(copied["sls_ord_num"], copied["sls_prd_key"], copied["sls_cust_id"], 9, 1.0, "e-5", STREAM_LOAD),
        stream_line("ST-4", products[0], 999_999_999, 1, 12.5, "e-9", STREAM_LOAD),
        stream_line("ST-4", "ZZ-NEW", customers[0], 1, 12.5, "e-9", STREAM_LOAD),
    ]


def dbt(work: Path, target: str, command: str = "build", *options: str) -> dbtRunnerResult:
    try:
        return dbtRunner().invoke([
            command, *options,
            "--project-dir", str(DBT_PROJECT_DIR),
            "--profiles-dir", str(DBT_PROJECT_DIR),
            "--target", target,
            "--target-path", str(work / f"dbt_target_{target}"),
            "--log-path", str(work / f"dbt_logs_{target}"),
        ])
    finally:
        release_duckdb_file()


UNKNOWN_MEMBERS_TEST = "test.dbt_gold.assert_unknown_members_within_limit"


def assert_build_passed(result: dbtRunnerResult) -> dict[str, str]:
    """Every node ran and passed (lines under the unknown member are a warning); returns node -> status."""
    assert result.exception is None, result.exception
    statuses = {r.node.unique_id: str(r.status) for r in result.result.results}
    failed = {node: status for node, status in statuses.items() if status not in ("pass", "success") and (node, status) != (UNKNOWN_MEMBERS_TEST, "warn")}
    assert result.success, failed
    assert not failed
    return statuses


def register_silver(spark, lake: Lake) -> None:
    """The silver, history and quality Delta tables as <spark schema>.<layer>_<table>, where the
    spark target's sources look (the Spark job's names on Unity Catalog)."""
    spark.sql(f"drop database if exists {SPARK_SCHEMA} cascade")
    spark.sql(f"create database {SPARK_SCHEMA}")
    tables = [
        *(("silver", table.name) for table in SILVER_TABLES), ("silver", STREAM_ORDERS),
        *(("history", table.name) for table in SILVER_TABLES if table.keeps_history), (QUALITY_LAYER, QUALITY_TABLE),
    ]
    for layer, name in tables:
        spark.sql(f"create table {SPARK_SCHEMA}.{layer}_{name} using delta location '{lake.uri(layer, name)}'")


# --- reading and comparing -------------------------------------------------------------------

def comparable(frame: pl.DataFrame) -> pl.DataFrame:
    """Timestamps as UTC instants, rows sorted by every column."""
    frame = frame.with_columns(
        pl.col(name).dt.convert_time_zone("UTC")
        for name, dtype in frame.schema.items() if isinstance(dtype, pl.Datetime) and dtype.time_zone
    )
    return frame.sort(frame.columns, nulls_last=True)


def duckdb_gold(lake: Lake, table: str) -> pl.DataFrame:
    with duckdb.connect(lake.gold_path, read_only=True) as connection:
        return comparable(connection.sql(f"select * from {GOLD_SCHEMA}.{table}").pl())


def spark_gold(spark, table: str) -> pl.DataFrame:
    return comparable(pl.from_arrow(spark.table(f"{SPARK_SCHEMA}.{table}").toArrow()))


def assert_same_gold(spark, lake: Lake) -> dict[str, int]:
    rows = {}
    for table in COMPARED:
        local, on_spark = duckdb_gold(lake, table), spark_gold(spark, table)
        assert on_spark.schema == local.schema, f"{table}: {on_spark.schema} != {local.schema}"
        try:
            assert_frame_equal(on_spark, local, check_exact=True)
        except AssertionError as error:
            raise AssertionError(f"gold/{table}: {error}") from None
        rows[table] = local.height
    return rows


# --- the check -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def golds(spark, tmp_path_factory):
    """(work dir, lake, statuses per target, (customer who moved, customer who left)) after the
    first build on both targets."""
    from logistics_pipeline.datasets.generate import generate_datasets

    work = tmp_path_factory.mktemp("gold-on-spark")
    generate_datasets(work / "sources", scale=0.05, seed=3)
    lake = Lake(str(work / "lake"))
    changed = build_silver(work / "sources", lake)
    write_stream(lake, first_stream_lines(lake))

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LOGISTICS_LAKE", lake.root)
        patch.setenv("DO_NOT_TRACK", "1")
        started = time.perf_counter()
        local = assert_build_passed(dbt(work, "local"))
        local_seconds = time.perf_counter() - started
        register_silver(spark, lake)
        started = time.perf_counter()
        on_spark = assert_build_passed(dbt(work, "spark"))
        print(f"\ndbt build: duckdb {local_seconds:.1f}s, spark {time.perf_counter() - started:.1f}s")
        yield work, lake, {"local": local, "spark": on_spark}, changed


def test_dbt_spark_ran_in_the_fixture_session(spark, golds):
    """dbt-spark's session method used this SparkSession: its tables are in this session's
    catalog, and the fact is a Delta table (the Delta extension was active)."""
    from pyspark.sql import SparkSession

    assert SparkSession.getActiveSession() is spark
    for table in COMPARED:
        assert spark.catalog.tableExists(f"{SPARK_SCHEMA}.{table}")
    assert spark.sql(f"describe detail {SPARK_SCHEMA}.fact_orders").first()["format"] == "delta"


def test_same_models_and_data_tests_pass_on_both_targets(golds):
    _, _, statuses, _ = golds
    # models/quarantine (quarantined_rows and its tests) is enabled on DuckDB only
    local = {node: status for node, status in statuses["local"].items() if "quarantined_rows" not in node}
    assert statuses["spark"] == local
    kinds = {node.split(".")[0] for node in statuses["spark"]}
    assert kinds == {"model", "test", "unit_test", "operation"}  # operation: the on-run-start hook
    assert sum(node.startswith("test.") for node in statuses["spark"]) >= 20
    assert {node for node in statuses["spark"] if node.startswith("model.")} == {f"model.dbt_gold.{t}" for t in COMPARED}


def test_gold_tables_are_equal(spark, golds):
    _, lake, _, _ = golds
    rows = assert_same_gold(spark, lake)
    assert all(rows.values()), rows
    fact = spark_gold(spark, "fact_orders")
    assert set(fact["source"]) == {"crm", "stream"}
    # the CRM over its streamed copy; unknown members on both targets
    assert fact.filter(pl.col("source") == "stream")["order_number"].to_list() == ["ST-1", "ST-1", "ST-2", "ST-4", "ST-4"]
    unknown = fact.filter(pl.col("order_number") == "ST-4")
    assert unknown.filter(pl.col("customer_key") == "-1").height == 1 and unknown.filter(pl.col("product_key") == "-1").height == 1


AS_OF_ORDER_DATE = """
    select f.order_number, f.product_number, f.order_date, c.country, c.version_number
    from {schema}.fact_orders f
    join {schema}.dim_customers_history c
        on c.customer_id = f.customer_id
        and c.valid_from <= f.order_date
        and (c.valid_to is null or f.order_date < c.valid_to)
    where f.customer_id = {customer}
"""


def test_history_and_the_as_of_order_date_query_agree_on_both_targets(spark, golds):
    """The customer who moved has two versions (the old country until the second run), orders
    before it find the old country on both targets; the customer who left keeps a closed
    version; each run left its quality rows."""
    _, lake, _, (moved, left) = golds
    history = spark_gold(spark, "dim_customers_history")
    versions = history.filter(pl.col("customer_id") == moved).sort("version_number")
    assert versions["version_number"].to_list() == [1, 2]
    assert versions["country"].to_list()[1] == MOVED_TO and versions["country"].to_list()[0] != MOVED_TO
    assert versions["valid_to"].to_list()[0] == versions["valid_from"].to_list()[1] == SECOND_RUN
    assert versions["valid_from"].to_list()[0] == datetime(1900, 1, 1, tzinfo=timezone.utc)
    closed = history.filter(pl.col("customer_id") == left)
    assert closed.select("valid_to", "is_current", "is_deleted").rows() == [(SECOND_RUN, False, True)]

    with duckdb.connect(lake.gold_path, read_only=True) as connection:
        local = connection.sql(AS_OF_ORDER_DATE.format(schema=GOLD_SCHEMA, customer=moved)).pl()
    on_spark = pl.from_arrow(spark.sql(AS_OF_ORDER_DATE.format(schema=SPARK_SCHEMA, customer=moved)).toArrow())
    assert comparable(on_spark).equals(comparable(local))
    lines = spark_gold(spark, "fact_orders").filter((pl.col("customer_id") == moved) & pl.col("order_date").is_not_null())
    assert local.height == lines.height  # every dated order line finds exactly one version
    before = local.filter(pl.col("order_date") < SECOND_RUN.date())
    assert before.height > 0 and set(before["country"]) == {versions["country"][0]}
    assert set(local.filter(pl.col("order_date") >= SECOND_RUN.date())["country"]) <= {MOVED_TO}

    quality = spark_gold(spark, "silver_quality")
    assert sorted(set(quality["run_id"])) == ["run-1", "run-2"] and set(quality["run_number"]) == {1, 2}
    assert quality.filter(pl.col("run_id") == "run-1").height == quality.filter(pl.col("run_id") == "run-2").height


def test_both_targets_follow_changed_silver(spark, golds):
    """A CRM line removed from the export, a streamed line replaced and one added: both targets
    rebuild the same gold from the changed silver."""
    work, lake, _, _ = golds
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LOGISTICS_LAKE", lake.root)
        patch.setenv("DO_NOT_TRACK", "1")
        crm = pl.read_delta(lake.uri("silver", "crm_sales_details")).sort("sls_ord_num", "sls_prd_key")
        removed = crm.row(1, named=True)
        crm.slice(0, 1).vstack(crm.slice(2)).write_delta(lake.uri("silver", "crm_sales_details"), mode="overwrite")
        lines = first_stream_lines(lake)
        replaced = lines[0]
        write_stream(lake, [
            stream_line("ST-1", replaced["sls_prd_key"], replaced["sls_cust_id"], 5, 12.5, "e-7", LATER_LOAD),  # the order's next event
            *lines[1:],
            stream_line("ST-3", removed["sls_prd_key"], removed["sls_cust_id"], 4, 2.5, "e-6", LATER_LOAD),
        ])
        # the history and quality sources did not change: their models are not built again
        assert_build_passed(dbt(work, "local", "build", "--exclude", *HISTORY_MODELS))
        assert_build_passed(dbt(work, "spark", "build", "--exclude", *HISTORY_MODELS))
        rows = assert_same_gold(spark, lake)
        fact = spark_gold(spark, "fact_orders")
        assert rows["fact_orders"] == crm.height - 1 + 6  # ST-1 twice, ST-2, ST-4 twice, ST-3; the copy of a CRM line loses
        assert fact.filter((pl.col("order_number") == removed["sls_ord_num"]) & (pl.col("product_number") == removed["sls_prd_key"])).height == 0
        assert fact.filter((pl.col("order_number") == "ST-1") & (pl.col("quantity") == 5)).height == 1
