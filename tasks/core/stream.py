"""Silver for the order stream: messages parsed into typed order lines, the same columns as
the CRM sales, with every invalid message or line quarantined with its Kafka coordinates.

Parsing JSON is the only engine-specific step (``parse_messages``, one pass with orjson); it
yields one text row per order line, or one row per message that is not a JSON order. The
validation rules are narwhals expressions over those rows, like every other silver rule.
Counts are in order lines: a message that cannot be parsed counts as one.

No message can make this raise: a null value (tombstone), bytes that are not JSON, NaN or
Infinity literals, JSON nested deeper than orjson's limit are ``not_json``; a list, a number,
``lines`` that is not a non-empty list or a line that is not an object are ``wrong_shape``;
an object or array (or a number or boolean) where text is expected, numbers beyond int64,
fractional quantities and impossible dates or times are ``mistyped_field``. Invalid UTF-8 was
already replaced (U+FFFD) by bronze; unicode in a product number makes it ``unknown_product``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import narwhals as nw
import orjson
import polars as pl

from logistics_pipeline.tasks.core.quality import STAGED, Rule, tag_rejects
from logistics_pipeline.tasks.core.silver import (
    amount_inconsistent,
    is_blank,
    is_real_date,
    stage_dates,
    staged,
    text,
    to_float,
    to_int,
)

KAFKA_ORDERS_SCHEMA = {
    "value": pl.String,
    "key": pl.String,
    "partition": pl.Int32,
    "offset": pl.Int64,
    "timestamp": pl.Datetime("ms", "UTC"),
    "_ingested_at": pl.Datetime("us", "UTC"),
    "_source": pl.String,
    "_batch_id": pl.String,
}
"""Bronze kafka_orders: one row per message, value and key as text, and where it came from."""
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
TEXT_FIELDS = frozenset(("event_id", "event_time", "order_number", "order_date", "ship_date", "due_date", "product_number"))
"""Fields that must be JSON strings (numeric fields may be numbers or numeric strings)."""
COORDINATES = ("key", "partition", "offset", "timestamp", "_source", "_batch_id", "_ingested_at")
PARSE_RULE = "_parse_rule"


def decode_text(raw: bytes | None) -> str | None:
    """Bytes as text, invalid UTF-8 replaced (U+FFFD): no message can fail to decode."""
    return None if raw is None else raw.decode("utf-8", errors="replace")


def decode_texts(raw: list[bytes | None]) -> pl.Series:
    """Bytes as text, invalid UTF-8 replaced (U+FFFD) as ``decode_text`` does: in one vectorised cast,
    or message by message when some value is not UTF-8."""
    try:
        return pl.Series(raw, dtype=pl.Binary).cast(pl.String)
    except pl.exceptions.ComputeError:  # invalid utf8
        return pl.Series([decode_text(value) for value in raw], dtype=pl.String)


def _as_text(value: object) -> str | None:
    """A JSON field as text, so typed checks are the same rules as for CSV text."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    try:
        return orjson.dumps(value).decode()
    except (TypeError, ValueError):  # orjson.JSONEncodeError is a TypeError; never fail on odd input
        return repr(value)


def _mistyped(order: dict, line: dict) -> bool:
    """A text field holding a number, a boolean, an object or an array."""
    return any(
        (value := source.get(name)) is not None and not isinstance(value, str)
        for source, names in ((order, ORDER_FIELDS), (line, LINE_FIELDS))
        for name in names
        if name in TEXT_FIELDS
    )


def parse_messages(bronze: pl.DataFrame) -> pl.DataFrame:
    """One row per order line (fields as text), or one row per message that is not a JSON
    order, tagged in ``_parse_rule`` with ``not_json`` or ``wrong_shape`` (or ``mistyped_field``
    for a line whose text fields are not JSON strings)."""
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
        if value is None:  # a tombstone: no value at all
            add(row, None, "not_json")
            continue
        try:
            order = orjson.loads(value)
        except Exception:  # noqa: BLE001 - orjson.JSONDecodeError, and anything else odd input may raise
            add(row, None, "not_json")
            continue
        lines = order.get("lines") if isinstance(order, dict) else None
        if not isinstance(lines, list) or not lines:
            add(row, None, "wrong_shape")
            continue
        for index, line in enumerate(lines):
            if not isinstance(line, dict):
                add(row, index, "wrong_shape", order)
            else:
                add(row, index, "mistyped_field" if _mistyped(order, line) else None, order, line)

    parsed = pl.DataFrame(columns, schema={name: pl.Int64 if name in ("_row", "_line_index") else pl.String for name in columns})
    return parsed.join(bronze.select("value", *COORDINATES).with_row_index("_row").with_columns(pl.col("_row").cast(pl.Int64)), on="_row").drop("_row")


EVENT_TIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(\+00:00|Z)$"


def _event_time_shaped() -> nw.Expr:
    """The trimmed event time when it has the ISO-8601 shape with a UTC offset, else null."""
    raw = text("event_time")
    return nw.when(raw.str.contains(EVENT_TIME).fill_null(False)).then(raw)


def _event_time(shaped: nw.Expr) -> nw.Expr:
    """Shaped event time (``...+00:00`` or ``Z``) to UTC; impossible dates and times (month 13,
    Feb 30, 25:00) become null: parsing never fails."""
    part = lambda offset, length: shaped.str.slice(offset, length).cast(nw.Int64())  # noqa: E731
    valid = is_real_date(part(0, 4), part(5, 2), part(8, 2)) & (part(11, 2) <= 23) & (part(14, 2) <= 59) & (part(17, 2) <= 59)
    checked = nw.when(valid.fill_null(False)).then(shaped)
    # Anchored patterns match once, so replace_all is replace; Spark has only the former. No
    # format: both engines read ISO text with 1-6 fraction digits (narwhals has no Spark pattern for %.f).
    utc = checked.str.replace_all(r"(\+00:00|Z)$", "").str.replace_all(r"^(.{19})$", "$1.0")
    return utc.str.to_datetime().dt.replace_time_zone("UTC")


STREAM_RULES: tuple[Rule, ...] = (
    Rule("not_json", lambda: nw.col(PARSE_RULE) == "not_json"),
    Rule("wrong_shape", lambda: nw.col(PARSE_RULE) == "wrong_shape"),
    Rule("missing_field", lambda: nw.any_horizontal(*(is_blank(name) for name in (*ORDER_FIELDS, *LINE_FIELDS)), ignore_nulls=False)),
    Rule(
        "mistyped_field",
        lambda: nw.any_horizontal(
            (nw.col(PARSE_RULE) == "mistyped_field").fill_null(False),
            *(staged(name).is_null() for name in TYPED_FIELDS),
            ignore_nulls=False,
        ),
    ),
    Rule("non_positive_quantity", lambda: staged("quantity") <= 0),
    Rule("non_positive_price", lambda: staged("price") <= 0),
    Rule("inconsistent_amount", lambda: amount_inconsistent(staged("sales_amount"), staged("quantity"), staged("price"))),
    Rule("ship_before_order", lambda: staged("ship_date") < staged("order_date")),
)
"""A customer or product that gold's dimensions do not hold is not a reason to reject a line:
gold points it to the unknown member (late-arriving dimension members are normal)."""

NUMBER_FIELDS: dict[str, Callable[[], nw.Expr]] = {
    "customer_id": lambda: to_int("customer_id"),
    "quantity": lambda: to_int("quantity"),
    "price": lambda: to_float("price"),
    "sales_amount": lambda: to_float("sales_amount"),
}
DATE_FIELDS = (("order_date", "yyyy-mm-dd"), ("ship_date", "yyyy-mm-dd"), ("due_date", "yyyy-mm-dd"))
TYPED_FIELDS = (*NUMBER_FIELDS, *(name for name, _ in DATE_FIELDS), "event_time")
"""The typed fields, parsed once into ``staged`` columns that the rules and the merge read."""


def validate(lines: nw.LazyFrame) -> nw.LazyFrame:
    """Tag every line with the first stream rule it breaks (``_rule``), after parsing its typed
    fields once into ``staged`` columns. Dates and the event time are parsed in two steps, the
    shaped text first: inline, their expressions nest the text a dozen times, and applying
    them cost 82 ms a batch however few lines it held (46 ms staged)."""
    shaped_time = STAGED + "text_event_time"
    shaped = stage_dates(lines, DATE_FIELDS).with_columns(
        *(parse().alias(STAGED + name) for name, parse in NUMBER_FIELDS.items()), _event_time_shaped().alias(shaped_time)
    )
    typed = shaped.with_columns(_event_time(nw.col(shaped_time)).alias(STAGED + "event_time")).drop(shaped_time)
    return tag_rejects(typed, STREAM_RULES)


ARRIVAL = ("_ingested_at", "_source", "partition", "offset")
"""The order messages arrived in: batch, then source (topic or landing file), then position."""
MESSAGE = "_message"


@dataclass(frozen=True)
class StreamMerge:
    """The accepted lines at each step of the event semantics, so each step's merges are counted:
    ``typed`` (every accepted line) -> ``first_delivery`` (replays of an ``event_id`` dropped)
    -> ``latest_event`` (lines of events a later event for the same order replaced dropped)
    -> ``silver`` (lines for the same product within the event summed)."""

    typed: nw.LazyFrame
    first_delivery: nw.LazyFrame
    latest_event: nw.LazyFrame
    silver: nw.LazyFrame


def merge_events(valid: nw.LazyFrame) -> StreamMerge:
    """Event semantics for the accepted lines of the stream.

    - A message is an order's whole state. Of several messages with one ``event_id`` (a
      replay), the first to arrive counts and the others are merged.
    - The latest event of an order (by ``event_time``, then arrival) replaces every earlier
      one: a corrected re-send arrives, lines it no longer holds leave.
    - Lines of one event for the same product are summed into one line (quantity and sales
      added, price = sales / quantity), so that the grain (order, product) loses nothing.
    """
    typed = valid.select(
        text("order_number").alias("sls_ord_num"),
        text("product_number").alias("sls_prd_key"),
        staged("customer_id").alias("sls_cust_id"),
        staged("order_date").alias("sls_order_dt"),
        staged("ship_date").alias("sls_ship_dt"),
        staged("due_date").alias("sls_due_dt"),
        staged("sales_amount").alias("sls_sales"),
        staged("quantity").alias("sls_quantity"),
        staged("price").alias("sls_price"),
        text("event_id").alias("event_id"),
        staged("event_time").alias("event_time"),
        *(nw.col(name) for name in ARRIVAL),
        nw.concat_str(
            [nw.col("_source"), nw.col("partition").cast(nw.String()).fill_null(""), nw.col("offset").cast(nw.String())],
            separator="/",
        ).alias(MESSAGE),
    )
    deliveries = typed.select("event_id", MESSAGE, *ARRIVAL).unique(["event_id"], keep="first", order_by=list(ARRIVAL))
    first_delivery = typed.join(deliveries.select("event_id", MESSAGE), on=["event_id", MESSAGE], how="inner")
    events = first_delivery.select("sls_ord_num", "event_time", MESSAGE, *ARRIVAL)
    latest = events.unique(["sls_ord_num"], keep="last", order_by=["event_time", *ARRIVAL])
    latest_event = first_delivery.join(latest.select("sls_ord_num", MESSAGE), on=["sls_ord_num", MESSAGE], how="inner")
    return StreamMerge(typed, first_delivery, latest_event, summed_lines(latest_event))


def summed_lines(lines: nw.LazyFrame) -> nw.LazyFrame:
    """One line per (order, product) of one event; a single line keeps its values as sent, and
    summed lines get price = sales / quantity and sales = quantity x price (gold's test holds exactly)."""
    per_product = lines.group_by("sls_ord_num", "sls_prd_key").agg(
        nw.len().alias("_lines"),
        nw.col("sls_quantity").sum(),
        nw.col("sls_sales").sum().alias("_sales_sum"),
        nw.col("sls_price").max().alias("_price"),
        # the same within one event: its order fields and load metadata
        *(nw.col(name).max() for name in ("sls_cust_id", "sls_order_dt", "sls_ship_dt", "sls_due_dt", "event_id", "event_time", "_ingested_at")),
    )
    summed = nw.col("_lines") > 1
    priced = per_product.with_columns(
        nw.when(summed).then(nw.col("_sales_sum") / nw.col("sls_quantity")).otherwise(nw.col("_price")).alias("sls_price"),
    )
    return priced.with_columns(
        nw.when(summed).then(nw.col("sls_quantity") * nw.col("sls_price")).otherwise(nw.col("_sales_sum")).alias("sls_sales"),
    ).select(list(STREAM_ORDERS_SCHEMA))
