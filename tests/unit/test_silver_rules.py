"""Each silver rule on a small frame (polars through narwhals)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timezone

import narwhals as nw
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from logistics_pipeline.tasks.core.quality import RULE_COLUMN, CountsDoNotReconcile, TableCounts
from logistics_pipeline.tasks.core.silver import (
    SILVER_BY_NAME,
    build,
    erp_customers,
    stage_dates,
    to_date,
    to_float,
    to_int,
)

LOADED = datetime(2026, 1, 1, tzinfo=timezone.utc)


def bronze(rows: list[dict[str, str | None]]) -> nw.LazyFrame:
    frame = pl.DataFrame(rows, schema={key: pl.String for key in rows[0]}).with_columns(
        pl.int_range(2, len(rows) + 2).cast(pl.Int64).alias("_line"),
        pl.lit(LOADED).alias("_ingested_at"),
        pl.lit("test.csv").alias("_source"),
        pl.lit("batch").alias("_batch_id"),
    )
    return nw.from_native(frame.lazy())


def run(table: str, rows: list[dict[str, str | None]]) -> tuple[pl.DataFrame, pl.DataFrame]:
    tagged, _, silver = build(SILVER_BY_NAME[table], bronze(rows))
    tagged_frame = tagged.collect().to_native()
    return silver.collect().to_native(), tagged_frame.filter(pl.col(RULE_COLUMN).is_not_null())


def values(frame: pl.DataFrame, column: str) -> list:
    return frame.sort("_ingested_at", *frame.columns[:1])[column].to_list()


def evaluate(expr: nw.Expr, texts: list[str | None]) -> list:
    frame = nw.from_native(pl.DataFrame({"v": texts}, schema={"v": pl.String}).lazy())
    return frame.select(expr.alias("out")).collect().to_native()["out"].to_list()


# --- helpers -------------------------------------------------------------------------------

def test_to_int_turns_anything_but_an_integer_into_null():
    assert evaluate(to_int("v"), ["12", " 7 ", "-3", "1.5", "abc", "", None, "99999999999999999999"]) == [
        12, 7, -3, None, None, None, None, None,
    ]


def test_to_float_accepts_decimals_only():
    assert evaluate(to_float("v"), ["12", "3.5", "-2", "x", "1e5", " "]) == [12.0, 3.5, -2.0, None, None, None]


def test_to_date_yyyymmdd_nulls_zero_wrong_length_and_impossible_dates():
    texts = ["20101229", "0", "2010122", "201012290", "20230229", "20240229", "20101332", "abcdefgh", None]
    assert evaluate(to_date("v", "yyyymmdd"), texts) == [
        date(2010, 12, 29), None, None, None, None, date(2024, 2, 29), None, None, None,
    ]


def test_to_date_iso():
    assert evaluate(to_date("v", "yyyy-mm-dd"), ["2025-10-06", "2025-02-30", "06/10/2025"]) == [date(2025, 10, 6), None, None]


# --- customers (CRM) -------------------------------------------------------------------------

def customer(cst_id, key="AW1", first=" Jon", last="Yang ", marital="M", gender="M", created="2025-10-06"):
    return {
        "cst_id": cst_id, "cst_key": key, "cst_firstname": first, "cst_lastname": last,
        "cst_marital_status": marital, "cst_gndr": gender, "cst_create_date": created,
    }


def test_customers_without_id_are_quarantined_with_the_rule_name():
    silver, rejected = run("crm_cust_info", [customer("11000"), customer(None, key="SF566"), customer("x1")])
    assert silver["cst_id"].to_list() == [11000]
    assert sorted(rejected[RULE_COLUMN].to_list()) == ["missing_customer_id", "non_numeric_customer_id"]
    assert rejected.filter(pl.col(RULE_COLUMN) == "missing_customer_id")["cst_key"].to_list() == ["SF566"]


def test_customers_names_trimmed_and_codes_mapped():
    rows = [
        customer("1", marital="S", gender="F"),
        customer("2", marital=" m ", gender=" f "),
        customer("3", marital=None, gender=""),
        customer("4", marital="X", gender="Male"),
    ]
    silver, _ = run("crm_cust_info", rows)
    silver = silver.sort("cst_id")
    assert silver["cst_firstname"].to_list() == ["Jon"] * 4
    assert silver["cst_lastname"].to_list() == ["Yang"] * 4
    assert silver["cst_marital_status"].to_list() == ["Single", "Married", "n/a", "n/a"]
    assert silver["cst_gndr"].to_list() == ["Female", "Female", "n/a", "n/a"]


def test_customers_keep_the_latest_create_date():
    rows = [customer("7", first=None, created="2026-01-27"), customer("7", first="Late", created="2026-01-28"), customer("7", first="Early", created="2026-01-25")]
    silver, rejected = run("crm_cust_info", rows)
    assert silver["cst_firstname"].to_list() == ["Late"]
    assert silver["cst_create_date"].to_list() == [date(2026, 1, 28)]
    assert rejected.height == 0


# --- products (CRM) --------------------------------------------------------------------------

def product(prd_id, key, start, end="", cost="10", line="R "):
    return {"prd_id": prd_id, "prd_key": key, "prd_nm": " Frame ", "prd_cost": cost, "prd_line": line, "prd_start_dt": start, "prd_end_dt": end}


def test_products_split_key_default_cost_map_line():
    silver, _ = run("crm_prd_info", [product("1", "CO-RF-FR-R92B-58", "2003-07-01", cost="", line=None), product("2", "AC-HE-HL-U509-R", "2011-07-01", line="m ")])
    silver = silver.sort("prd_id")
    assert silver["cat_id"].to_list() == ["CO_RF", "AC_HE"]
    assert silver["prd_key"].to_list() == ["FR-R92B-58", "HL-U509-R"]
    assert silver["prd_nm"].to_list() == ["Frame", "Frame"]
    assert silver["prd_cost"].to_list() == [0.0, 10.0]
    assert silver["prd_line"].to_list() == ["n/a", "Mountain"]


def test_product_line_codes():
    rows = [product(str(i), f"AC-HE-P{i}", "2011-07-01", line=code) for i, code in enumerate(["M", "R", "S", "T", "X", " "])]
    silver, _ = run("crm_prd_info", rows)
    assert silver.sort("prd_id")["prd_line"].to_list() == ["Mountain", "Road", "Other Sales", "Touring", "n/a", "n/a"]


def test_product_end_date_is_day_before_next_version_and_file_end_dates_are_ignored():
    rows = [
        product("3", "AC-HE-HL-U509-R", "2013-07-01", end=""),
        product("1", "AC-HE-HL-U509-R", "2011-07-01", end="2007-12-28"),
        product("2", "AC-HE-HL-U509-R", "2012-07-01", end="2008-12-27"),
        product("4", "BI-RB-BK-R93R-62", "2011-07-01", end="2001-01-01"),
    ]
    silver, _ = run("crm_prd_info", rows)
    assert silver.sort("prd_id")["prd_end_dt"].to_list() == [date(2012, 6, 30), date(2013, 6, 30), None, None]


def test_products_with_malformed_key_are_quarantined():
    silver, rejected = run("crm_prd_info", [product("1", "CO-R", "2003-07-01"), product("2", "AC-HE-HL-U509-R", "2011-07-01")])
    assert silver["prd_id"].to_list() == [2]
    assert rejected[RULE_COLUMN].to_list() == ["malformed_product_key"]


# --- sales (CRM) -----------------------------------------------------------------------------

def sale(order="SO1", product_key="BK-R93R-62", cust="21768", order_dt="20101229", sales="3578", qty="1", price="3578"):
    return {
        "sls_ord_num": order, "sls_prd_key": product_key, "sls_cust_id": cust, "sls_order_dt": order_dt,
        "sls_ship_dt": "20110105", "sls_due_dt": "20110110", "sls_sales": sales, "sls_quantity": qty, "sls_price": price,
    }


@pytest.mark.parametrize(
    ("missing", "rule"),
    [("sls_ord_num", "missing_order_number"), ("sls_prd_key", "missing_product_number"), ("sls_cust_id", "missing_customer_id")],
)
def test_sales_without_keys_are_quarantined(missing, rule):
    bad = sale(order="SO2") | {missing: " "}
    silver, rejected = run("crm_sales_details", [sale(), bad])
    assert silver["sls_ord_num"].to_list() == ["SO1"]
    assert rejected[RULE_COLUMN].to_list() == [rule]


def test_sales_dates_zero_or_wrong_length_become_null():
    silver, _ = run("crm_sales_details", [sale("SO1", order_dt="0"), sale("SO2", order_dt="3244"), sale("SO3")])
    assert silver.sort("sls_ord_num")["sls_order_dt"].to_list() == [None, None, date(2010, 12, 29)]
    assert silver["sls_ship_dt"].to_list() == [date(2011, 1, 5)] * 3


@pytest.mark.parametrize(
    ("sales", "qty", "price", "expected_sales", "expected_price"),
    [
        ("100", "2", "50", 100.0, 50.0),   # consistent: unchanged
        ("", "2", "50", 100.0, 50.0),      # missing sales = quantity x price
        ("0", "1", "35", 35.0, 35.0),      # zero sales
        ("-35", "1", "35", 35.0, 35.0),    # negative sales
        ("33", "1", "24", 24.0, 24.0),     # sales != quantity x price
        ("90", "2", "-45", 90.0, 45.0),    # negative price: |price| for sales, sales / quantity for price
        ("70", "2", "", 70.0, 35.0),       # missing price = sales / quantity
        ("70", "2", "0", 0.0, 35.0),       # zero price: quantity x |price| = 0, the line cannot be repaired
    ],
)
def test_sales_and_price_repair(sales, qty, price, expected_sales, expected_price):
    rows = [sale(sales=sales, qty=qty, price=price)]
    silver, rejected = run("crm_sales_details", rows)
    if expected_sales <= 0:
        assert rejected[RULE_COLUMN].to_list() == ["unrecoverable_price"]
        return
    assert silver["sls_sales"].to_list() == [expected_sales]
    assert silver["sls_price"].to_list() == [expected_price]


def test_sales_without_any_usable_amount_or_quantity_are_quarantined():
    silver, rejected = run("crm_sales_details", [sale("SO1", sales="", price=""), sale("SO2", qty="0"), sale("SO3")])
    assert silver["sls_ord_num"].to_list() == ["SO3"]
    assert sorted(rejected[RULE_COLUMN].to_list()) == ["invalid_quantity", "unrecoverable_price"]


def test_sales_duplicates_merge_on_order_and_product():
    silver, rejected = run("crm_sales_details", [sale("SO1", sales="10", price="10"), sale("SO1", sales="20", price="20")])
    assert silver["sls_sales"].to_list() == [20.0]


# --- ERP -------------------------------------------------------------------------------------

def test_erp_customers_strip_nas_null_future_birthdates_map_gender():
    rows = [
        {"CID": "NASAW00011000", "BDATE": "1971-10-06", "GEN": "Male"},
        {"CID": "AW00011001", "BDATE": "2999-01-01", "GEN": " F "},
        {"CID": "NASAW00011002", "BDATE": "1980-01-01", "GEN": "female"},
        {"CID": "AW00011003", "BDATE": "", "GEN": "  "},
    ]
    staged = stage_dates(bronze(rows), SILVER_BY_NAME["erp_cust_az12"].dates)  # as build() gives it
    out = erp_customers(staged, today=date(2026, 1, 1)).collect().to_native()
    assert out["cid"].to_list() == ["AW00011000", "AW00011001", "AW00011002", "AW00011003"]
    assert out["bdate"].to_list() == [date(1971, 10, 6), None, date(1980, 1, 1), None]
    assert out["gen"].to_list() == ["Male", "Female", "Female", "n/a"]


def test_erp_locations_clean_ids_and_countries():
    rows = [{"CID": f"AW-0001100{i}", "CNTRY": c} for i, c in enumerate(["DE", "US", "USA", "", None, " France ", "Germany"])]
    silver, _ = run("erp_loc_a101", rows)
    silver = silver.sort("cid")
    assert silver["cid"].to_list()[0] == "AW00011000"
    assert silver["cntry"].to_list() == ["Germany", "United States", "United States", "n/a", "n/a", "France", "Germany"]


def test_erp_categories_trimmed_and_missing_id_quarantined():
    silver, rejected = run("erp_px_cat_g1v2", [{"ID": "AC_BR ", "CAT": " Accessories", "SUBCAT": "Bike Racks", "MAINTENANCE": "Yes"}, {"ID": "", "CAT": "x", "SUBCAT": "y", "MAINTENANCE": "No"}])
    assert silver.select("id", "cat", "subcat", "maintenance").rows() == [("AC_BR", "Accessories", "Bike Racks", "Yes")]
    assert rejected[RULE_COLUMN].to_list() == ["missing_category_id"]


def test_counts_must_reconcile():
    TableCounts("t", rows_in=10, rows_out=7, quarantined=2, merged_duplicates=1)
    with pytest.raises(CountsDoNotReconcile, match="do not reconcile"):
        TableCounts("t", rows_in=10, rows_out=7, quarantined=2, merged_duplicates=0)


# --- what gold tests is enforced in silver -----------------------------------------------------

def test_customers_with_a_negative_id_or_no_customer_number_are_quarantined():
    silver, rejected = run("crm_cust_info", [customer("1"), customer("-4", key="AW4"), customer("5", key=" ")])
    assert silver["cst_id"].to_list() == [1]
    assert sorted(rejected[RULE_COLUMN].to_list()) == ["missing_customer_number", "negative_customer_id"]


def test_products_with_a_negative_id_are_quarantined():
    silver, rejected = run("crm_prd_info", [product("-1", "AC-HE-HL-U509-R", "2011-07-01"), product("2", "AC-HE-HL-U509", "2011-07-01")])
    assert silver["prd_id"].to_list() == [2]
    assert rejected[RULE_COLUMN].to_list() == ["negative_product_id"]


def test_product_versions_follow_the_product_number_after_duplicate_ids_merge():
    """The same product number under two category prefixes is one product with two versions,
    and a duplicated id is merged before versions are computed: one current version each."""
    rows = [
        product("1", "CO-RF-FR-R92B-58", "2011-07-01"),
        product("2", "AC-HE-FR-R92B-58", "2012-07-01"),
        product("3", "AC-HE-HL-U509-R", "2013-07-01"),
        product("3", "AC-HE-HL-U509-R", "2010-07-01"),  # the same id again, later in the file: it wins
    ]
    silver, _ = run("crm_prd_info", rows)
    current = silver.filter(pl.col("prd_end_dt").is_null()).sort("prd_id")
    assert current.select("prd_id", "prd_key").rows() == [(2, "FR-R92B-58"), (3, "HL-U509-R")]
    assert silver.sort("prd_id")["prd_end_dt"].to_list() == [date(2012, 6, 30), None, None]


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"sls_ship_dt": "0"}, "invalid_ship_date"),
        ({"sls_ship_dt": ""}, "invalid_ship_date"),
        ({"sls_due_dt": "20110231"}, "invalid_due_date"),
        ({"sls_ship_dt": "20101228"}, "ship_before_order"),
        ({"sls_sales": "100", "sls_price": "-45", "sls_quantity": "2"}, "inconsistent_amount"),
    ],
)
def test_sales_that_gold_would_reject_are_quarantined(change, rule):
    silver, rejected = run("crm_sales_details", [sale("SO1"), sale("SO2") | change])
    assert silver["sls_ord_num"].to_list() == ["SO1"]
    assert rejected[RULE_COLUMN].to_list() == [rule]


def test_a_missing_order_date_is_kept_and_never_compared():
    silver, rejected = run("crm_sales_details", [sale("SO1", order_dt="0")])
    assert silver["sls_order_dt"].to_list() == [None] and rejected.height == 0


def test_every_kept_sales_line_satisfies_gold_amount_test():
    rows = [sale(f"SO{i}", sales=s, qty=q, price=p) for i, (s, q, p) in enumerate([
        ("10", "3", "3.3333333"), ("", "7", "0.1"), ("1e3", "1", "5"), ("99999999999999.99", "3", ""), ("0.3", "3", "0.1"),
    ])]
    silver, _ = run("crm_sales_details", rows)
    worst = silver.select((pl.col("sls_sales") - pl.col("sls_quantity") * pl.col("sls_price")).abs().max()).item()
    assert worst is None or worst <= 0.01


# --- merging duplicates ----------------------------------------------------------------------

ROWS = st.lists(
    st.tuples(st.sampled_from(["a", "b", None]), st.sampled_from([1, 2]), st.one_of(st.none(), st.integers(0, 3))),
    max_size=30,
)


@given(rows=ROWS)
def test_dedupe_keeps_what_sort_then_unique_keeps(rows):
    """The window filter keeps, per key, the row a sort by the merge order (nulls first) and
    unique(keep="last") keeps: the greatest create date, then the latest line."""
    table = SILVER_BY_NAME["crm_cust_info"]
    frame = pl.DataFrame(
        {"cst_id": [f"{k}{n}" if k else None for k, n, _ in rows], "cst_create_date": [d for *_, d in rows], "_line": range(len(rows))},
        schema={"cst_id": pl.String, "cst_create_date": pl.Int64, "_line": pl.Int64},
    )
    expected = frame.sort(list(table.merge_order), nulls_last=False).unique(list(table.merge_key), keep="last")
    kept = table.dedupe(nw.from_native(frame.lazy())).collect().to_native()
    assert sorted(kept["_line"].to_list()) == sorted(expected["_line"].to_list())


def test_merge_order_must_end_with_the_line_number():
    with pytest.raises(ValueError, match="must end with _line"):
        replace(SILVER_BY_NAME["crm_cust_info"], merge_order=("cst_create_date",))
