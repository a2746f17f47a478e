"""The gold dbt project (dbt_gold/) on real Delta tables and a real DuckDB file.

Each test writes a handful of silver rows as Delta tables under tmp_path/lake/silver,
runs `dbt build` in-process against the `local` target, and reads <lake>/gold.duckdb.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import polars as pl
import pytest
from dbt.cli.main import dbtRunner, dbtRunnerResult
from dbt.contracts.graph.manifest import Manifest
from deltalake import write_deltalake

from logistics_pipeline.tasks.core.stream import STREAM_ORDERS_SCHEMA
from logistics_pipeline.tasks.gold.dbt import dbt_vars, project_manifest, work_dir
from logistics_pipeline.tasks.gold.dbt import dbt_build as pipeline_dbt_build
from logistics_pipeline.tasks.gold.parsed_project import PARSE_LAKE, SAVED_PARSE, parse_cache_root, parse_slot
from logistics_pipeline.tasks.local.lake import Lake
from logistics_pipeline.tasks.settings import Settings
from tests.local_layers import write_history_and_quality

DBT_PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_gold"

FIRST_LOAD = datetime(2025, 11, 20, 8, 0, tzinfo=timezone.utc)
LATER_LOAD = datetime(2025, 11, 21, 8, 0, tzinfo=timezone.utc)

INGESTED_AT = pl.Datetime("us", "UTC")

STREAM_SCHEMA = STREAM_ORDERS_SCHEMA
ORDER_LINE_SCHEMA = {name: dtype for name, dtype in STREAM_SCHEMA.items() if name.startswith("sls_")}
CRM_SALES_SCHEMA = {**ORDER_LINE_SCHEMA, "_ingested_at": INGESTED_AT}


def key(value: object) -> str:
    """The surrogate key the models compute: md5 of the value as text."""
    return hashlib.md5(str(value).encode()).hexdigest()


def write_silver(lake: Path, table: str, rows: list[tuple], schema: dict, mode: str = "overwrite") -> None:
    frame = pl.DataFrame(rows, schema=schema, orient="row")
    if "_ingested_at" not in frame.columns:
        frame = frame.with_columns(pl.lit(FIRST_LOAD, INGESTED_AT).alias("_ingested_at"))
    write_deltalake(str(lake / "silver" / table), frame, mode=mode)


def stream_row(order: str, product: str, customer: int, quantity: int, price: float, event_id: str,
               ingested_at: datetime) -> tuple:
    return (order, product, customer, date(2025, 11, 19), date(2025, 11, 26), date(2025, 12, 1),
            quantity * price, quantity, price, event_id, ingested_at, ingested_at)


def crm_sales_row(order: str, product: str, customer: int, quantity: int, price: float,
                  ingested_at: datetime = FIRST_LOAD, order_date: date | None = date(2013, 1, 10)) -> tuple:
    return (order, product, customer, order_date, date(2013, 1, 17), date(2013, 1, 22),
            quantity * price, quantity, price, ingested_at)


def write_reference_silver(lake: Path) -> None:
    """A tiny silver layer covering the joins and fallbacks the gold models implement."""
    write_silver(lake, "crm_cust_info", [
        (1, "AW00000001", "Ann", "Lee", "Married", "Female", date(2025, 1, 1)),
        # gender unknown in the CRM: falls back to the ERP's 'Male'
        (2, "AW00000002", "Bob", "Ray", "Single", "n/a", date(2025, 1, 2)),
        # gender unknown in the CRM and the ERP; no ERP location
        (3, "AW00000003", "Cid", "Roe", "n/a", "n/a", date(2025, 1, 3)),
    ], {
        "cst_id": pl.Int64, "cst_key": pl.String, "cst_firstname": pl.String,
        "cst_lastname": pl.String, "cst_marital_status": pl.String, "cst_gndr": pl.String,
        "cst_create_date": pl.Date,
    })
    write_silver(lake, "erp_cust_az12", [
        ("AW00000001", date(1980, 5, 1), "Male"),  # the CRM's 'Female' wins
        ("AW00000002", date(1990, 6, 2), "Male"),
        ("AW00000003", None, "n/a"),
    ], {"cid": pl.String, "bdate": pl.Date, "gen": pl.String})
    write_silver(lake, "erp_loc_a101", [
        ("AW00000001", "Germany"),
        ("AW00000002", "United States"),
    ], {"cid": pl.String, "cntry": pl.String})
    write_silver(lake, "crm_prd_info", [
        # two versions of one product: only the current one (no end date) is a dimension row
        (10, "BI_RB", "BK-R50B-58", "Road-650 Black- 58", 400.0, "Road", date(2012, 1, 1), date(2012, 12, 31)),
        (11, "BI_RB", "BK-R50B-58", "Road-650 Black- 58", 420.0, "Road", date(2013, 1, 1), None),
        # category CO_PE is missing from the ERP
        (20, "CO_PE", "PD-M282", "LL Mountain Pedal", 18.0, "Mountain", date(2013, 7, 1), None),
        (30, "AC_HE", "HL-U509", "Sport-100 Helmet- Black", 12.0, "Other Sales", date(2011, 7, 1), None),
    ], {
        "prd_id": pl.Int64, "cat_id": pl.String, "prd_key": pl.String, "prd_nm": pl.String,
        "prd_cost": pl.Float64, "prd_line": pl.String, "prd_start_dt": pl.Date,
        "prd_end_dt": pl.Date,
    })
    write_silver(lake, "erp_px_cat_g1v2", [
        ("BI_RB", "Bikes", "Road Bikes", "Yes"),
        ("AC_HE", "Accessories", "Helmets", "No"),
    ], {"id": pl.String, "cat": pl.String, "subcat": pl.String, "maintenance": pl.String})
    write_silver(lake, "crm_sales_details", [
        crm_sales_row("SO1", "BK-R50B-58", 1, 1, 420.0),
        crm_sales_row("SO1", "HL-U509", 1, 2, 12.0),
        crm_sales_row("SO2", "PD-M282", 2, 1, 18.0, order_date=None),
    ], CRM_SALES_SCHEMA)
    write_silver(lake, "stream_orders", [
        stream_row("SO3", "HL-U509", 3, 1, 12.0, "e-1", FIRST_LOAD),
        # the same line as a CRM line: the CRM line wins
        stream_row("SO1", "HL-U509", 1, 3, 12.0, "e-2", FIRST_LOAD),
    ], STREAM_SCHEMA)


@pytest.fixture
def lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    lake = tmp_path / "lake"
    write_reference_silver(lake)
    write_history_and_quality(Lake(str(lake)))  # gold's history and quality models read them
    monkeypatch.setenv("LOGISTICS_LAKE", str(lake))
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    return lake


def dbt_build(lake: Path, *extra: str) -> dbtRunnerResult:
    work = lake.parent
    return dbtRunner().invoke([
        "build",
        "--project-dir", str(DBT_PROJECT_DIR),
        "--profiles-dir", str(DBT_PROJECT_DIR),
        "--target", "local",
        "--target-path", str(work / "dbt_target"),
        "--log-path", str(work / "dbt_logs"),
        *extra,
    ])


def assert_build_passed(result: dbtRunnerResult, warnings: frozenset[str] = frozenset()) -> None:
    assert result.exception is None, result.exception
    failed = [(r.node.name, str(r.status), r.message) for r in result.result.results
              if str(r.status) not in ("pass", "success") and not (str(r.status) == "warn" and r.node.name in warnings)]
    assert result.success, failed
    assert not failed


def failed_nodes(result: dbtRunnerResult) -> set[str]:
    assert not result.success
    return {r.node.name for r in result.result.results if str(r.status) in ("fail", "error")}


def query(lake: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(lake / "gold.duckdb")) as con:
        return con.execute(sql).fetchall()


UNKNOWN = "-1"
FACT_COLUMNS = ("order_number, product_key, customer_key, product_number, customer_id, order_date, shipping_date, due_date, "
                "sales_amount, quantity, price, source")


def fact_rows(lake: Path) -> list[tuple]:
    return query(lake, f"select {FACT_COLUMNS} from main.fact_orders order by order_number, product_number")


CRM_DATES = (date(2013, 1, 10), date(2013, 1, 17), date(2013, 1, 22))
STREAM_DATES = (date(2025, 11, 19), date(2025, 11, 26), date(2025, 12, 1))


def expected_fact_rows() -> list[tuple]:
    rows = [
        ("SO1", key("BK-R50B-58"), key(1), "BK-R50B-58", 1, *CRM_DATES, 420.0, 1, 420.0, "crm"),
        ("SO1", key("HL-U509"), key(1), "HL-U509", 1, *CRM_DATES, 24.0, 2, 12.0, "crm"),
        ("SO2", key("PD-M282"), key(2), "PD-M282", 2, None, *CRM_DATES[1:], 18.0, 1, 18.0, "crm"),
        ("SO3", key("HL-U509"), key(3), "HL-U509", 3, *STREAM_DATES, 12.0, 1, 12.0, "stream"),
    ]
    return sorted(rows, key=lambda row: (row[0], row[3]))


def test_build_creates_the_gold_tables(lake: Path) -> None:
    assert_build_passed(dbt_build(lake))

    assert query(lake, """
        select customer_key, customer_id, customer_number, first_name, last_name, country,
               marital_status, gender, birthdate, create_date
        from main.dim_customers order by customer_id nulls first
    """) == [
        (UNKNOWN, None, None, None, None, "n/a", "n/a", "n/a", None, None),
        (key(1), 1, "AW00000001", "Ann", "Lee", "Germany", "Married", "Female", date(1980, 5, 1), date(2025, 1, 1)),
        (key(2), 2, "AW00000002", "Bob", "Ray", "United States", "Single", "Male", date(1990, 6, 2), date(2025, 1, 2)),
        (key(3), 3, "AW00000003", "Cid", "Roe", None, "n/a", "n/a", None, date(2025, 1, 3)),
    ]

    assert query(lake, """
        select product_key, product_id, product_number, product_name, category_id, category,
               subcategory, maintenance, cost, product_line, start_date
        from main.dim_products order by product_id nulls first
    """) == [
        (UNKNOWN, None, None, None, "n/a", None, None, None, None, "n/a", None),
        (key("BK-R50B-58"), 11, "BK-R50B-58", "Road-650 Black- 58", "BI_RB", "Bikes", "Road Bikes", "Yes",
         420.0, "Road", date(2013, 1, 1)),
        (key("PD-M282"), 20, "PD-M282", "LL Mountain Pedal", "CO_PE", None, None, None,
         18.0, "Mountain", date(2013, 7, 1)),
        (key("HL-U509"), 30, "HL-U509", "Sport-100 Helmet- Black", "AC_HE", "Accessories", "Helmets", "No",
         12.0, "Other Sales", date(2011, 7, 1)),
    ]

    assert fact_rows(lake) == expected_fact_rows()
    assert [column for (column,) in query(lake, """
        select column_name from information_schema.columns
        where table_schema = 'main' and table_catalog = 'gold' and table_name = 'fact_orders' order by ordinal_position
    """)] == [*FACT_COLUMNS.split(", "), "_ingested_at"]
    # The sources were copied for this build and dropped after it: the next build reads silver again.
    assert {schema for (schema,) in query(lake, "select distinct table_schema from information_schema.tables")} == {"main", "quarantine"}


def test_second_build_changes_nothing(lake: Path) -> None:
    assert_build_passed(dbt_build(lake))
    customers = query(lake, "select * from main.dim_customers order by customer_id")
    products = query(lake, "select * from main.dim_products order by product_id")

    assert_build_passed(dbt_build(lake))

    assert query(lake, "select * from main.dim_customers order by customer_id") == customers
    assert query(lake, "select * from main.dim_products order by product_id") == products
    assert fact_rows(lake) == expected_fact_rows()


def test_gold_follows_the_current_silver_lines(lake: Path) -> None:
    """The CRM export is a snapshot: a line it no longer holds leaves gold, and a streamed line
    it had hidden comes back."""
    assert_build_passed(dbt_build(lake))
    write_silver(lake, "crm_sales_details", [
        crm_sales_row("SO1", "BK-R50B-58", 1, 1, 420.0, ingested_at=LATER_LOAD),
        crm_sales_row("SO2", "PD-M282", 2, 3, 18.0, ingested_at=LATER_LOAD, order_date=None),  # corrected quantity
    ], CRM_SALES_SCHEMA)
    write_silver(lake, "stream_orders", [
        stream_row("SO3", "HL-U509", 3, 1, 12.0, "e-1", FIRST_LOAD),
        stream_row("SO1", "HL-U509", 1, 3, 12.0, "e-2", FIRST_LOAD),
        stream_row("SO4", "BK-R50B-58", 2, 1, 420.0, "e-3", LATER_LOAD),
    ], STREAM_SCHEMA)

    assert_build_passed(dbt_build(lake))

    assert fact_rows(lake) == [
        ("SO1", key("BK-R50B-58"), key(1), "BK-R50B-58", 1, *CRM_DATES, 420.0, 1, 420.0, "crm"),
        ("SO1", key("HL-U509"), key(1), "HL-U509", 1, *STREAM_DATES, 36.0, 3, 12.0, "stream"),
        ("SO2", key("PD-M282"), key(2), "PD-M282", 2, None, *CRM_DATES[1:], 54.0, 3, 18.0, "crm"),
        ("SO3", key("HL-U509"), key(3), "HL-U509", 3, *STREAM_DATES, 12.0, 1, 12.0, "stream"),
        ("SO4", key("BK-R50B-58"), key(2), "BK-R50B-58", 2, *STREAM_DATES, 420.0, 1, 420.0, "stream"),
    ]


def test_crm_line_replaces_a_streamed_line(lake: Path) -> None:
    assert_build_passed(dbt_build(lake))
    write_silver(lake, "crm_sales_details", [
        crm_sales_row("SO3", "HL-U509", 3, 1, 12.0, ingested_at=LATER_LOAD),
    ], CRM_SALES_SCHEMA, mode="append")

    assert_build_passed(dbt_build(lake))

    assert query(lake, """
        select order_number, source, order_date from main.fact_orders
        where order_number = 'SO3'
    """) == [("SO3", "crm", date(2013, 1, 10))]
    assert query(lake, "select count(*) from main.fact_orders") == [(4,)]


def test_lines_of_unknown_customers_and_products_point_to_the_unknown_member(lake: Path) -> None:
    write_silver(lake, "crm_sales_details", [crm_sales_row("SO7", "HL-U509", 99, 1, 12.0)], CRM_SALES_SCHEMA, mode="append")
    write_silver(lake, "stream_orders", [stream_row("SO8", "ZZ-NEW", 1, 2, 5.0, "e-9", LATER_LOAD)], STREAM_SCHEMA, mode="append")

    assert_build_passed(dbt_build(lake), warnings=frozenset({"assert_unknown_members_within_limit"}))

    assert query(lake, """
        select order_number, product_key, customer_key, product_number, customer_id from main.fact_orders
        where customer_key = '-1' or product_key = '-1' order by order_number
    """) == [("SO7", key("HL-U509"), UNKNOWN, "HL-U509", 99), ("SO8", UNKNOWN, key(1), "ZZ-NEW", 1)]
    assert query(lake, "select count(customer_id), count(*) from main.dim_customers") == [(3, 4)]


def test_a_limit_on_unknown_member_lines_fails_the_build(lake: Path) -> None:
    write_silver(lake, "crm_sales_details", [crm_sales_row("SO7", "HL-U509", 99, 1, 12.0)], CRM_SALES_SCHEMA, mode="append")

    assert failed_nodes(dbt_build(lake, "--vars", '{"max_unknown_member_lines": 0}')) == {"assert_unknown_members_within_limit"}
    assert_build_passed(dbt_build(lake, "--vars", '{"max_unknown_member_lines": 1}'), warnings=frozenset({"assert_unknown_members_within_limit"}))


def test_the_data_tests_can_fail(lake: Path) -> None:
    """Silver keeps such a line out (it is quarantined); written straight into silver, the test catches it."""
    write_silver(lake, "crm_sales_details", [
        crm_sales_row("SO9", "HL-U509", 1, 1, -12.0),
    ], CRM_SALES_SCHEMA, mode="append")

    assert failed_nodes(dbt_build(lake)) == {"assert_price_not_less_zero"}


@pytest.mark.parametrize(("setting", "shown"), [(None, "953.6 MiB"), ("64MB", "61.0 MiB")])
def test_gold_builds_within_a_memory_limit(lake: Path, monkeypatch: pytest.MonkeyPatch, setting: str | None, shown: str) -> None:
    """DuckDB spills beyond LOGISTICS_GOLD_MEMORY_LIMIT (default 1GB) instead of growing with the
    data; the build passes under a small limit."""
    if setting is not None:
        monkeypatch.setenv("LOGISTICS_GOLD_MEMORY_LIMIT", setting)
    work = lake.parent
    result = dbtRunner().invoke([
        "show", "--inline", "select current_setting('memory_limit') as memory_limit",
        "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR), "--target", "local",
        "--target-path", str(work / "dbt_target"), "--log-path", str(work / "dbt_logs"),
    ])
    assert result.success, result.exception
    assert [row["memory_limit"] for row in result.result.results[0].agate_table.rows] == [shown]
    assert_build_passed(dbt_build(lake))


def settings_for(lake: Path) -> Settings:
    return Settings(lake=str(lake))


def pipeline_parse(settings: Settings) -> Manifest | None:
    """The project as the pipeline's dbt commands get it (``tasks.gold.dbt.dbt_runner``)."""
    return project_manifest(settings, dbt_vars(settings))


@pytest.fixture
def parse_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return parse_cache_root()


def test_one_parse_serves_every_lake(lake: Path, tmp_path: Path, parse_cache: Path) -> None:
    """What dbt parses names no lake: two lakes share one saved parse, and the manifest holds
    neither lake, nor the placeholder the parse had for it."""
    other = settings_for(tmp_path / "another lake")
    manifest = pipeline_parse(settings_for(lake))
    assert manifest is not None
    assert [slot.name for slot in parse_cache.iterdir()] == [parse_slot("local", {**dbt_vars(other), "lake": PARSE_LAKE}).name]
    saved = next(parse_cache.iterdir()) / SAVED_PARSE
    assert saved.is_file()
    text = json.dumps(manifest.writable_manifest().to_dict())
    for lake_path in (str(lake), other.lake, PARSE_LAKE):
        assert lake_path not in text
    assert {node.database for node in manifest.nodes.values() if node.resource_type == "model"} == {"gold"}


@pytest.mark.usefixtures("prefect_server")
def test_builds_on_two_lakes_run_on_the_saved_parse(lake: Path, tmp_path: Path, parse_cache: Path) -> None:
    """The pipeline's build does not parse (dbt leaves no saved parse in the lake's target), and
    each lake's gold is its own silver's."""
    second = tmp_path / "second" / "lake"
    write_reference_silver(second)
    write_history_and_quality(Lake(str(second)))
    write_silver(second, "stream_orders", [], STREAM_SCHEMA)  # the second lake has no streamed line
    built = {}
    for each in (lake, second):
        settings = settings_for(each)
        pipeline_dbt_build(settings, gold_path=str(each / "gold.duckdb"))
        target = work_dir(settings) / "target"
        assert (target / "manifest.json").is_file() and not (target / SAVED_PARSE).exists()
        built[each] = [row[0] for row in query(each, "select order_number from main.fact_orders order by 1")]
    assert built == {lake: ["SO1", "SO1", "SO2", "SO3"], second: ["SO1", "SO1", "SO2"]}


def test_a_damaged_saved_parse_is_parsed_again(lake: Path, parse_cache: Path) -> None:
    settings = settings_for(lake)
    assert pipeline_parse(settings) is not None
    saved = next(parse_cache.iterdir()) / SAVED_PARSE
    saved.write_bytes(b"not a parse")
    manifest = pipeline_parse(settings)
    assert manifest is not None and len(Manifest.from_msgpack(saved.read_bytes()).nodes) == len(manifest.nodes)


@pytest.mark.usefixtures("prefect_server")
def test_without_a_cache_the_build_parses_for_itself(lake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "a file"))
    settings = settings_for(lake)
    assert pipeline_parse(settings) is None
    pipeline_dbt_build(settings, gold_path=str(lake / "gold.duckdb"))
    assert (work_dir(settings) / "target" / SAVED_PARSE).is_file()
    assert [row[0] for row in query(lake, "select count(*) from main.fact_orders")] == [4]
