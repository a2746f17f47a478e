"""The silver rules for sales, customers and products as the seed's pandas stack would write them.

This is the baseline the project's silver step is compared with (issue 6): a straightforward
pandas pipeline, not a tuned one. It reads the bronze Delta table into pandas
(``DeltaTable(...).to_pandas()``), cleans column by column with the ``.str`` accessor, parses
and validates values with element-wise ``Series.apply`` of small Python functions (the
idiom the reference project's CASE expressions turn into in pandas), repairs amounts with
``np.where``, tags each row with the first rule it breaks with ``np.select``, derives product
end dates with ``groupby().shift()``, deduplicates with ``sort_values().drop_duplicates()``, and
writes silver and quarantine as Delta tables with ``write_deltalake``.

The rules are the project's (tasks/core/silver.py), with the same outcomes: the harness checks that
row counts and sums agree with the project's output before it reports any rate.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
from deltalake import DeltaTable, write_deltalake

NA = "n/a"
INTEGER = re.compile(r"[+-]?[0-9]+")
NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)")
DATE_LAYOUTS = {"yyyymmdd": (re.compile(r"[0-9]{8}"), "%Y%m%d"), "yyyy-mm-dd": (re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}"), "%Y-%m-%d")}


# --- value helpers (element-wise) --------------------------------------------------------------


def clean(series: pd.Series) -> pd.Series:
    """Trim; blank means missing."""
    trimmed = series.str.strip()
    return trimmed.where(trimmed.str.len() > 0, None)


def to_int(value: object) -> float:
    if not isinstance(value, str) or len(value) > 18 or not INTEGER.fullmatch(value):
        return np.nan
    return float(int(value))


def to_float(value: object) -> float:
    if not isinstance(value, str) or len(value) > 30 or not NUMBER.fullmatch(value):
        return np.nan
    return float(value)


def date_parser(layout: str):
    pattern, fmt = DATE_LAYOUTS[layout]

    def parse(value: object) -> date | None:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            return None
        try:
            return datetime.strptime(value, fmt).date()
        except ValueError:  # Feb 30, month 13, ...
            return None

    return parse


def code_map(series: pd.Series, mapping: dict[str, str]) -> pd.Series:
    return series.str.strip().str.upper().map(mapping).fillna(NA)


def as_int64(values: pd.Series) -> pd.Series:
    return values.astype("Int64")


# --- tables ------------------------------------------------------------------------------------


def first_rule(conditions: list[tuple[str, pd.Series]], bronze: pd.DataFrame | None = None) -> pd.Series:
    """The name of the first rule each row breaks, or None. A row bronze could not read as a
    record (``_bronze_error``, when bronze records it) breaks ``malformed_row`` before any other."""
    if bronze is not None and "_bronze_error" in bronze.columns:
        conditions = [("malformed_row", bronze["_bronze_error"].notna()), *conditions]
    names = np.select([mask.to_numpy(dtype=bool, na_value=False) for _, mask in conditions], [name for name, _ in conditions], default="")
    return pd.Series(np.where(names == "", None, names), dtype=object)


def split(bronze: pd.DataFrame, rule: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(accepted rows, quarantined rows as received with the rule's name first)."""
    rule.index = bronze.index
    rejected = bronze[rule.notna()].copy()
    rejected.insert(0, "_rule", rule[rule.notna()])
    return bronze[rule.isna()].copy(), rejected


def sales(bronze: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    ord_num, prd_key, cust = clean(bronze["sls_ord_num"]), clean(bronze["sls_prd_key"]), clean(bronze["sls_cust_id"])
    quantity = clean(bronze["sls_quantity"]).apply(to_int)
    sales_in = clean(bronze["sls_sales"]).apply(to_float)
    price_in = clean(bronze["sls_price"]).apply(to_float)
    expected = quantity * price_in.abs()
    sales_bad = sales_in.isna() | (sales_in <= 0) | ((sales_in != expected) & expected.notna())
    amount = np.where(sales_bad, expected, sales_in)
    price = np.where(price_in.isna() | (price_in <= 0), sales_in / quantity, price_in)
    rule = first_rule([
        ("missing_order_number", ord_num.isna()),
        ("missing_product_number", prd_key.isna()),
        ("missing_customer_id", cust.isna()),
        ("non_numeric_customer_id", cust.apply(to_int).isna()),
        ("invalid_quantity", ~(quantity > 0)),
        ("unrecoverable_price", pd.Series(np.isnan(amount) | np.isnan(price) | (price <= 0) | (amount <= 0), index=bronze.index)),
    ], bronze)
    accepted_rows, rejected = split(bronze, rule)
    keep = rule.isna().to_numpy()
    parse = date_parser("yyyymmdd")
    silver = pd.DataFrame({
        "sls_ord_num": ord_num[keep],
        "sls_prd_key": prd_key[keep],
        "sls_cust_id": as_int64(cust[keep].apply(to_int)),
        "sls_order_dt": clean(accepted_rows["sls_order_dt"]).apply(parse),
        "sls_ship_dt": clean(accepted_rows["sls_ship_dt"]).apply(parse),
        "sls_due_dt": clean(accepted_rows["sls_due_dt"]).apply(parse),
        "sls_sales": amount[keep],
        "sls_quantity": as_int64(quantity[keep]),
        "sls_price": price[keep],
        "_ingested_at": accepted_rows["_ingested_at"],
        "_line": accepted_rows["_line"],
    })
    silver = silver.sort_values("_line").drop_duplicates(["sls_ord_num", "sls_prd_key"], keep="last")
    return silver.drop(columns="_line"), rejected


def customers(bronze: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    cst_id = clean(bronze["cst_id"])
    rule = first_rule([
        ("missing_customer_id", cst_id.isna()),
        ("non_numeric_customer_id", cst_id.apply(to_int).isna()),
    ], bronze)
    rows, rejected = split(bronze, rule)
    silver = pd.DataFrame({
        "cst_id": as_int64(clean(rows["cst_id"]).apply(to_int)),
        "cst_key": clean(rows["cst_key"]),
        "cst_firstname": clean(rows["cst_firstname"]),
        "cst_lastname": clean(rows["cst_lastname"]),
        "cst_marital_status": code_map(rows["cst_marital_status"], {"S": "Single", "M": "Married"}),
        "cst_gndr": code_map(rows["cst_gndr"], {"F": "Female", "M": "Male"}),
        "cst_create_date": clean(rows["cst_create_date"]).apply(date_parser("yyyy-mm-dd")),
        "_ingested_at": rows["_ingested_at"],
        "_line": rows["_line"],
    })
    # the latest create date wins (a missing date sorts first, as in the project)
    silver["_sort_date"] = pd.to_datetime(silver["cst_create_date"])
    silver = silver.sort_values(["_sort_date", "_line"], na_position="first").drop_duplicates("cst_id", keep="last")
    return silver.drop(columns=["_line", "_sort_date"]), rejected


def products(bronze: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    key = clean(bronze["prd_key"])
    start = clean(bronze["prd_start_dt"]).apply(date_parser("yyyy-mm-dd"))
    rule = first_rule([
        ("non_numeric_product_id", clean(bronze["prd_id"]).apply(to_int).isna()),
        ("malformed_product_key", key.isna() | (key.str.len() < 7)),
        ("missing_start_date", start.isna()),
    ], bronze)
    rows, rejected = split(bronze, rule)
    keep = rule.isna().to_numpy()
    frame = pd.DataFrame({"_key": key[keep], "_start": pd.to_datetime(start[keep]), "_line": rows["_line"]})
    frame = frame.sort_values(["_key", "_start", "_line"])
    next_start = frame.groupby("_key")["_start"].shift(-1)
    end = (next_start - timedelta(days=1)).reindex(rows.index)
    silver = pd.DataFrame({
        "prd_id": as_int64(clean(rows["prd_id"]).apply(to_int)),
        "cat_id": key[keep].str[:5].str.replace("-", "_"),
        "prd_key": key[keep].str[6:],
        "prd_nm": clean(rows["prd_nm"]),
        "prd_cost": clean(rows["prd_cost"]).apply(to_float).fillna(0.0),
        "prd_line": code_map(rows["prd_line"], {"M": "Mountain", "R": "Road", "S": "Other Sales", "T": "Touring"}),
        "prd_start_dt": start[keep],
        "prd_end_dt": end.apply(lambda ts: None if pd.isna(ts) else ts.date()),
        "_ingested_at": rows["_ingested_at"],
        "_line": rows["_line"],
    })
    silver = silver.sort_values("_line").drop_duplicates("prd_id", keep="last")
    return silver.drop(columns="_line"), rejected


TABLES = {"crm_sales_details": sales, "crm_cust_info": customers, "crm_prd_info": products}


def run_table(name: str, bronze_uri: str, silver_uri: str, quarantine_uri: str) -> dict[str, int]:
    """Read bronze, apply the rules, write silver and quarantine (Delta); returns the row counts."""
    bronze = DeltaTable(bronze_uri).to_pandas()
    silver, rejected = TABLES[name](bronze)
    write_deltalake(quarantine_uri, rejected.reset_index(drop=True), mode="overwrite")
    write_deltalake(silver_uri, silver.reset_index(drop=True), mode="overwrite")
    return {"rows_in": len(bronze), "rows_out": len(silver), "quarantined": len(rejected)}
