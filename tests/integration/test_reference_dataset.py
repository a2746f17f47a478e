"""The pipeline on the public reference dataset (../shared), against its well-known results.

The expected figures are the published ones for this dataset (18,484 customers, 295 current
products, 60,398 order lines) plus facts read straight off the CSV files with the csv module.
"""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from tests.lake_snapshot import gold_frame

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture(scope="module")
def reference_lake(reference_sources, tmp_path_factory, prefect_server) -> Path:
    from logistics_pipeline.flows.pipeline import logistics_pipeline

    lake = tmp_path_factory.mktemp("reference-lake")
    logistics_pipeline(source_dir=str(reference_sources), lake=str(lake))
    return lake


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_gold_row_counts_match_the_published_results(reference_lake):
    counts = gold_frame(
        reference_lake,
        "select (select count(customer_id) from dim_customers) c, (select count(product_id) from dim_products) p, "
        "(select count(*) from fact_orders) f, (select count(*) from dim_customers where customer_key = '-1') u",
    ).row(0)
    assert counts == (18484, 295, 60398, 1)  # and the unknown member, key '-1'
    assert gold_frame(reference_lake, "select count(*) from fact_orders where customer_key = '-1' or product_key = '-1'").item() == 0


def test_silver_customer_dirt(reference_lake):
    quarantine = pl.read_delta(str(reference_lake / "quarantine" / "crm_cust_info"))
    assert quarantine.height == 4
    assert set(quarantine["_rule"]) == {"missing_customer_id"}
    customers = pl.read_delta(str(reference_lake / "silver" / "crm_cust_info"))
    assert customers.height == 18484
    # cst_id 29466 appears three times; the latest create date wins.
    assert customers.filter(pl.col("cst_id") == 29466).select("cst_firstname", "cst_lastname").row(0) == ("Lance", "Jimenez")


def test_dim_customers_values(reference_lake):
    row = gold_frame(reference_lake, "select * from dim_customers where customer_id = 11000").to_dicts()[0]
    assert row | {"customer_key": None} == {
        "customer_key": None, "customer_id": 11000, "customer_number": "AW00011000", "first_name": "Jon",
        "last_name": "Yang", "country": "Australia", "marital_status": "Married", "gender": "Male",
        "birthdate": date(1971, 10, 6), "create_date": date(2025, 10, 6),
    }
    genders = set(gold_frame(reference_lake, "select distinct gender from dim_customers")["gender"])
    assert genders == {"Male", "Female", "n/a"}
    countries = set(gold_frame(reference_lake, "select distinct country from dim_customers")["country"])
    assert {"Germany", "United States", "n/a"} <= countries
    assert not countries & {"DE", "US", "USA", ""}


def test_crm_gender_falls_back_to_erp(reference_lake, reference_sources):
    """Customers with a blank CRM gender take the ERP one (the ERP file, read independently)."""
    crm = {r["cst_key"]: r["cst_gndr"].strip() for r in read_csv(reference_sources / "source_crm" / "cust_info.csv") if r["cst_id"]}
    erp = {r["CID"].removeprefix("NAS"): r["GEN"].strip().upper() for r in read_csv(reference_sources / "source_erp" / "CUST_AZ12.csv")}
    key = next(k for k, g in crm.items() if g == "" and erp.get(k) in {"F", "FEMALE"})
    gender = gold_frame(reference_lake, f"select gender from dim_customers where customer_number = '{key}'").item()
    assert gender == "Female"


def test_dim_products_are_current_versions(reference_lake, reference_sources):
    products = read_csv(reference_sources / "source_crm" / "prd_info.csv")
    assert gold_frame(reference_lake, "select count(distinct product_number) from dim_products").item() == len({p["prd_key"] for p in products})
    helmet = gold_frame(reference_lake, "select * from dim_products where product_number = 'HL-U509-R'").to_dicts()
    assert len(helmet) == 1
    assert helmet[0]["start_date"] == date(2013, 7, 1)
    assert helmet[0]["category"] == "Accessories" and helmet[0]["category_id"] == "AC_HE"
    missing_category = gold_frame(reference_lake, "select count(*) from dim_products where category_id = 'CO_PE' and category is null").item()
    assert missing_category == 7


def test_fact_orders_totals(reference_lake, reference_sources):
    lines = read_csv(reference_sources / "source_crm" / "sales_details.csv")
    bad_order_dates = sum(1 for r in lines if r["sls_order_dt"] == "0" or len(r["sls_order_dt"]) != 8)
    totals = gold_frame(
        reference_lake,
        "select count(*) filter (where order_date is null) null_dates, sum(quantity) qty, "
        "count(*) filter (where sales_amount <> quantity * price) inconsistent, "
        "count(*) filter (where product_key is null or customer_key is null) unresolved, "
        "count(distinct source) sources from fact_orders",
    ).to_dicts()[0]
    assert totals == {
        "null_dates": bad_order_dates,
        "qty": sum(int(r["sls_quantity"]) for r in lines),
        "inconsistent": 0,
        "unresolved": 0,
        "sources": 1,
    }
    assert bad_order_dates == 19
