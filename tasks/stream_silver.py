"""Silver for the order stream: messages parsed into typed order lines, the same columns as
the CRM sales, with every invalid message or line quarantined with its Kafka coordinates.

Parsing JSON is the only engine-specific step (``parse_messages``, one pass with orjson); it
yields one text row per order line, or one row per message that is not a JSON order. The
validation rules are narwhals expressions over those rows, like every other silver rule.
Counts are in order lines: a message that cannot be parsed counts as one.
"""

from __future__ import annotations

import narwhals as nw
import orjson
import polars as pl

from tasks import lake
from tasks.quality import Rule, accepted, tag_rejects
from tasks.silver import is_blank, text, to_date, to_float, to_int

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
ORDER_FIELDS = ("event_id", "event_time", "order_number", "customer_id", "order_date", "ship_date", "due_date")
LINE_FIELDS = ("product_number", "quantity", "price", "sales_amount")
COORDINATES = ("key", "partition", "offset", "timestamp", "_source", "_batch_id", "_ingested_at")
PARSE_RULE = "_parse_rule"


def _as_text(value: object) -> str | None:
    """A JSON field as text, so typed checks are the same rules as for CSV text."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return orjson.dumps(value).decode()


def parse_messages(bronze: pl.DataFrame) -> pl.DataFrame:
    """One row per order line (fields as text), or one row per message that is not a JSON
    order, tagged in ``_parse_rule`` with ``not_json`` or ``wrong_shape``."""
    columns: dict[str, list] = {name: [] for name in (*ORDER_FIELDS, *LINE_FIELDS, "_row", "_line_index", PARSE_RULE)}

    def add(row: int, index: int | None, rule: str | None, order: dict | None = None, line: dict | None = None) -> None:
        columns["_row"].append(row)
        columns["_line_index"].append(index)
        columns[PARSE_RULE].append(rule)
        for name in ORDER_FIELDS:
            columns[name].append(_as_text(order.get(name)) if order else None)
        for name in LINE_FIELDS:
            columns[name].append(_as_text(line.get(name)) if line else None)

    for row, value in enumerate(bronze["value"].to_list()):
        try:
            order = orjson.loads(value) if value is not None else None
        except orjson.JSONDecodeError:
            add(row, None, "not_json")
            continue
        lines = order.get("lines") if isinstance(order, dict) else None
        if not isinstance(lines, list) or not lines:
            add(row, None, "wrong_shape")
            continue
        for index, line in enumerate(lines):
            if isinstance(line, dict):
                add(row, index, None, order, line)
            else:
                add(row, index, "wrong_shape", order)

    parsed = pl.DataFrame(columns, schema={name: pl.Int64 if name in ("_row", "_line_index") else pl.String for name in columns})
    return parsed.join(bronze.select("value", *COORDINATES).with_row_index("_row").with_columns(pl.col("_row").cast(pl.Int64)), on="_row").drop("_row")


def _event_time() -> nw.Expr:
    """ISO-8601 event time with offset (``...+00:00`` or ``Z``) to UTC; anything else null."""
    raw = text("event_time")
    shaped = nw.when(raw.str.contains(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(\+00:00|Z)$")).then(raw)
    utc = shaped.str.replace(r"(\+00:00|Z)$", "").str.replace(r"^(.{19})$", "$1.0")
    return utc.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f").dt.replace_time_zone("UTC")


def _known(flag: str) -> nw.Expr:
    return ~nw.col(flag).is_null()


STREAM_RULES: tuple[Rule, ...] = (
    Rule("not_json", lambda: nw.col(PARSE_RULE) == "not_json"),
    Rule("wrong_shape", lambda: nw.col(PARSE_RULE) == "wrong_shape"),
    Rule("missing_field", lambda: nw.any_horizontal(*(is_blank(name) for name in (*ORDER_FIELDS, *LINE_FIELDS)), ignore_nulls=False)),
    Rule(
        "mistyped_field",
        lambda: nw.any_horizontal(
            to_int("customer_id").is_null(),
            to_int("quantity").is_null(),
            to_float("price").is_null(),
            to_float("sales_amount").is_null(),
            to_date("order_date", "yyyy-mm-dd").is_null(),
            to_date("ship_date", "yyyy-mm-dd").is_null(),
            to_date("due_date", "yyyy-mm-dd").is_null(),
            _event_time().is_null(),
            ignore_nulls=False,
        ),
    ),
    Rule("non_positive_quantity", lambda: to_int("quantity") <= 0),
    Rule("non_positive_price", lambda: to_float("price") <= 0),
    Rule("ship_before_order", lambda: to_date("ship_date", "yyyy-mm-dd") < to_date("order_date", "yyyy-mm-dd")),
    Rule("unknown_product", lambda: ~_known("_known_product")),
    Rule("unknown_customer", lambda: ~_known("_known_customer")),
)


def validate(lines: nw.LazyFrame, products: nw.LazyFrame, customers: nw.LazyFrame) -> nw.LazyFrame:
    """Tag every line with the first stream rule it breaks (``_rule``); products and customers
    are the known product numbers (``prd_key``) and customer ids (``cst_id``)."""
    known_products = products.select(nw.col("prd_key").alias("_product"), nw.lit(True).alias("_known_product")).unique(["_product"])
    known_customers = customers.select(nw.col("cst_id").alias("_customer"), nw.lit(True).alias("_known_customer")).unique(["_customer"])
    joined = (
        lines.with_columns(text("product_number").alias("_product"), to_int("customer_id").alias("_customer"))
        .join(known_products, on="_product", how="left")
        .join(known_customers, on="_customer", how="left")
    )
    return tag_rejects(joined, STREAM_RULES).drop("_product", "_customer", "_known_product", "_known_customer")


def order_lines(valid: nw.LazyFrame) -> nw.LazyFrame:
    """Valid lines typed as the CRM sales columns; a replayed line (same order and product) once."""
    typed = valid.select(
        text("order_number").alias("sls_ord_num"),
        text("product_number").alias("sls_prd_key"),
        to_int("customer_id").alias("sls_cust_id"),
        to_date("order_date", "yyyy-mm-dd").alias("sls_order_dt"),
        to_date("ship_date", "yyyy-mm-dd").alias("sls_ship_dt"),
        to_date("due_date", "yyyy-mm-dd").alias("sls_due_dt"),
        to_float("sales_amount").alias("sls_sales"),
        to_int("quantity").alias("sls_quantity"),
        to_float("price").alias("sls_price"),
        text("event_id").alias("event_id"),
        _event_time().alias("event_time"),
        nw.col("_ingested_at"),
        nw.col("_source"),
        nw.col("partition"),
        nw.col("offset"),
        nw.col("_line_index"),
    )
    first = typed.unique(["sls_ord_num", "sls_prd_key"], keep="first", order_by=["_ingested_at", "_source", "partition", "offset", "_line_index"])
    return first.select(list(STREAM_ORDERS_SCHEMA))


def ensure_stream_orders(lake_: lake.Lake) -> None:
    """Gold reads stream_orders on every run, so it exists (empty) before any order arrives."""
    uri = lake_.uri("silver", STREAM_ORDERS)
    if not lake.table_exists(uri):
        lake.overwrite(uri, pl.DataFrame(schema=STREAM_ORDERS_SCHEMA), input_fingerprint="empty")

