"""Silver for the order stream: typed order lines in the same columns as the CRM sales."""

from __future__ import annotations

import polars as pl

from tasks import lake

STREAM_ORDERS = "stream_orders"
STREAM_ORDERS_SCHEMA = {
    "sls_ord_num": pl.String,
    "sls_prd_key": pl.String,
    "sls_cust_id": pl.Int64,
    "sls_order_dt": pl.Date,
    "sls_ship_dt": pl.Date,
    "sls_due_dt": pl.Date,
    "sls_sales": pl.Float64,
    "sls_quantity": pl.Int64,
    "sls_price": pl.Float64,
    "event_id": pl.String,
    "event_time": pl.Datetime("us", "UTC"),
    "_ingested_at": pl.Datetime("us", "UTC"),
}


def ensure_stream_orders(lake_: lake.Lake) -> None:
    """Gold reads stream_orders on every run, so it exists (empty) before any order arrives."""
    uri = lake_.uri("silver", STREAM_ORDERS)
    if not lake.table_exists(uri):
        lake.overwrite(uri, pl.DataFrame(schema=STREAM_ORDERS_SCHEMA), input_fingerprint="empty")
