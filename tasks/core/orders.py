"""Synthetic orders for the stream, generated in bulk and referring to real customers and products.

One message is one order. The key is the order number (UTF-8 bytes); the value is JSON:

```text
{"event_id": "5f0c6a8e0b4d4f7e9c1a2b3c4d5e6f70",       # uuid4 hex, unique per message
 "event_time": "2026-11-26T13:00:00.123456+00:00",     # when the order was placed (UTC, microseconds)
 "order_number": "ST0000000000000123",                 # "ST" + 6-digit seed + 10-digit index
 "customer_id": 11000,                                 # a CRM cst_id
 "order_date": "2026-11-26",                           # the date of event_time, within 30 days of `now`
 "ship_date": "2026-12-03",                            # order_date + 7 days
 "due_date": "2026-12-08",                             # order_date + 12 days
 "lines": [                                            # 1 to 4 lines, distinct products
   {"product_number": "BK-R93R-62", "quantity": 1, "price": 3578.0, "sales_amount": 3578.0}]}
```

``product_number`` is a current CRM product (silver ``crm_prd_info.prd_key``); ``price`` is a whole
amount, ``quantity`` 1 to 3 and ``sales_amount = quantity * price``. Order numbers start with
``ST`` so they never collide with the CRM's ``SO`` numbers, and carry the seed so runs with
different seeds never collide with each other (the same seed reproduces the same orders).

With ``bad_fraction`` > 0 that share of messages is deliberately bad, spread evenly over
``BAD_KINDS``: ``malformed_json`` (the JSON text cut in half), ``missing_customer_id`` (the key
is absent), ``negative_price`` (the first line's price negated; its sales_amount stays
quantity * |price|, as in the CRM source), ``ship_before_order`` (ship_date = order_date - 3 days)
and ``unknown_product`` (the first line's product_number is ``ZZ-UNKNOWN-<message index>``, not in
the catalog: silver keeps the line, and gold points it to the unknown product).

Generation draws every field for a whole chunk with numpy and assembles the JSON text column-wise
with polars (native, multi-threaded), because per-message Python work, let alone one faker or
random call per field per message, would be the producer's bottleneck.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import orjson
import polars as pl

from logistics_pipeline.tasks.errors import PipelineError

BAD_KINDS = ("malformed_json", "missing_customer_id", "negative_price", "ship_before_order", "unknown_product")
ORDER_PREFIX = "ST"
MAX_SEED = 1_000_000  # the seed takes 6 digits of the order number
MAX_INDEX = 10_000_000_000  # the message index takes 10
MAX_LINES = 4
MAX_QUANTITY = 3
WINDOW_DAYS = 30
SHIP_DAYS, DUE_DAYS = 7, 12
MARKUP = 1.75  # list price = cost x markup, as the CRM prices roughly are

_US_PER_DAY = 86_400_000_000


@dataclass(frozen=True)
class ReferenceData:
    """What orders may refer to: customer ids and current products with their list price."""

    customers: np.ndarray  # int64 cst_id
    products: dict[str, float]  # product number -> price
    source: str  # "silver" or "csv"


@dataclass(frozen=True)
class OrderBatch:
    """A chunk of generated messages; ``bad_kinds[i]`` is None for a good message."""

    keys: list[bytes]
    values: list[bytes]
    lines: np.ndarray  # order lines per message
    bad_kinds: list[str | None]

    def __len__(self) -> int:
        return len(self.values)

    @property
    def messages(self) -> list[tuple[bytes, bytes]]:
        return list(zip(self.keys, self.values, strict=True))

    @property
    def order_lines(self) -> int:
        """Order lines as silver counts them: a message that is not JSON counts as one."""
        malformed = np.fromiter((kind == "malformed_json" for kind in self.bad_kinds), dtype=bool, count=len(self.bad_kinds))
        return int(self.lines[~malformed].sum() + malformed.sum())

    @property
    def bad_messages(self) -> int:
        return sum(kind is not None for kind in self.bad_kinds)

    @property
    def good_order_lines(self) -> int:
        """Lines silver should keep: every line of a good message or of one whose product is
        unknown (gold's unknown member), and the lines after the first of a message whose first
        line alone is bad (negative price)."""
        kept = {None: 0, "negative_price": 1, "unknown_product": 0}
        return int(sum(int(n) - kept[kind] for n, kind in zip(self.lines, self.bad_kinds, strict=True) if kind in kept))


def reference_from(customers: pl.Series, products: pl.DataFrame, source: str, where: str) -> ReferenceData:
    """Customer ids, and current products (``number``, ``cost``) priced at cost x ``MARKUP``."""
    customer_ids = customers.drop_nulls().unique().sort().to_numpy().astype(np.int64)
    priced = (
        products.filter(pl.col("cost") > 0, pl.col("number").str.len_chars() > 0)
        .unique("number", keep="last", maintain_order=True)
        .sort("number")
        .with_columns(price=(pl.col("cost") * MARKUP).round(0).clip(lower_bound=2.0))
    )
    catalog = dict(zip(priced["number"].to_list(), priced["price"].to_list(), strict=True))
    if len(customer_ids) == 0 or not catalog:
        raise PipelineError(f"no customers or products to order from ({where})")
    return ReferenceData(customer_ids, catalog, source)


def bad_count(start: int, count: int, bad_fraction: float) -> tuple[int, int]:
    """(bad messages before ``start``, bad messages in [start, start + count)): exact over a whole run."""
    before = round(start * bad_fraction)
    return before, round((start + count) * bad_fraction) - before


def generate_orders(
    count: int,
    seed: int,
    customers: Sequence[int] | np.ndarray,
    products: Mapping[str, float],
    bad_fraction: float = 0.0,
    now: datetime | None = None,
    start: int = 0,
) -> OrderBatch:
    """Messages ``start`` .. ``start + count - 1`` of the run ``seed``; deterministic for (seed, start, now).

    A long run calls this chunk by chunk with increasing ``start``; the bad messages are then
    spread over the whole run exactly as if it were one chunk.
    """
    if not 0 <= seed < MAX_SEED:
        raise PipelineError(f"seed must be in 0..{MAX_SEED - 1}, got {seed}")
    if start < 0 or count < 0 or start + count > MAX_INDEX:
        raise PipelineError(f"messages {start}..{start + count} are outside 0..{MAX_INDEX}")
    if not 0.0 <= bad_fraction <= 1.0:
        raise PipelineError(f"bad_fraction must be between 0 and 1, got {bad_fraction}")
    customer_ids = np.asarray(customers, dtype=np.int64)
    numbers = np.asarray(list(products.keys()), dtype=object)
    prices = np.asarray(list(products.values()), dtype=np.float64)
    if len(customer_ids) == 0 or len(numbers) == 0:
        raise PipelineError("generating orders needs at least one customer and one product")
    now = now or datetime.now(timezone.utc)
    now = now.replace(tzinfo=timezone.utc) if now.tzinfo is None else now.astimezone(timezone.utc)  # naive = UTC
    rng = np.random.default_rng([seed, start])
    n = count

    # --- every field of every order, drawn at once -----------------------------------------
    today = np.datetime64(now.date(), "D")
    first_day = today - np.timedelta64(WINDOW_DAYS + 3, "D")  # the earliest date any field can hold
    placed = np.datetime64(now.replace(tzinfo=None), "us") - rng.integers(0, WINDOW_DAYS * _US_PER_DAY, n).astype("timedelta64[us]")
    order_day = (placed.astype("datetime64[D]") - first_day).astype(np.int64)  # days since first_day
    customer = rng.integers(0, len(customer_ids), n)
    n_lines = rng.integers(1, min(MAX_LINES, len(numbers)) + 1, n)
    product = _distinct_products(rng, n, len(numbers))
    quantity = rng.integers(1, MAX_QUANTITY + 1, (n, MAX_LINES))
    event_ids = _uuid4_hex(rng, n)

    # --- which messages are bad, and how -----------------------------------------------------
    bad_before, n_bad = bad_count(start, n, bad_fraction)
    kind = np.full(n, -1, dtype=np.int64)
    if n_bad:
        kind[np.sort(rng.choice(n, n_bad, replace=False))] = (bad_before + np.arange(n_bad)) % len(BAD_KINDS)
    is_kind = {name: kind == code for code, name in enumerate(BAD_KINDS)}
    ship_day = order_day + np.where(is_kind["ship_before_order"], -3, SHIP_DAYS)

    # --- JSON text: small lookup tables of ready-made fragments, gathered per message ---------
    day_text = pl.Series(np.datetime_as_string(first_day + np.arange(WINDOW_DAYS + 3 + DUE_DAYS + 1)))
    line_text = pl.Series([_line_json(number, q, price, q * price) for number, price in products.items() for q in range(1, MAX_QUANTITY + 1)])
    line_index = product * MAX_QUANTITY + quantity - 1
    lines = {f"line{j}": line_text.gather(line_index[:, j]) for j in range(MAX_LINES)}
    first_line_bad = np.flatnonzero(is_kind["negative_price"] | is_kind["unknown_product"])
    if len(first_line_bad):
        lines["line0"] = lines["line0"].scatter(first_line_bad, [_bad_line(i, start, kind, product, quantity, numbers, prices) for i in first_line_bad.tolist()])
    customer_text = pl.Series([f',"customer_id":{c}' for c in customer_ids.tolist()]).gather(customer)
    if is_kind["missing_customer_id"].any():
        customer_text = customer_text.scatter(np.flatnonzero(is_kind["missing_customer_id"]), "")
    frame = pl.DataFrame(
        {
            "event_id": pl.Series(event_ids),
            "placed": placed,
            "customer": customer_text,
            "order_date": day_text.gather(order_day),
            "ship_date": day_text.gather(ship_day),
            "due_date": day_text.gather(order_day + DUE_DAYS),
            "n_lines": n_lines,
            "malformed": is_kind["malformed_json"],
            **lines,
        }
    ).with_columns(
        order_number=pl.lit(f"{ORDER_PREFIX}{seed:06d}") + pl.int_range(start, start + n, dtype=pl.Int64).cast(pl.String).str.zfill(10)
    )
    text = frame.select(pl.col("order_number").cast(pl.Binary), _order_json().cast(pl.Binary).alias("value"))
    bad_kinds = [None if code < 0 else BAD_KINDS[code] for code in kind.tolist()] if n_bad else [None] * n
    return OrderBatch(text["order_number"].to_list(), text["value"].to_list(), n_lines, bad_kinds)


def _line_json(number: str, quantity: int, price: float, sales: float) -> str:
    return orjson.dumps({"product_number": number, "quantity": quantity, "price": price, "sales_amount": sales}).decode()


def _bad_line(i: int, start: int, kind: np.ndarray, product: np.ndarray, quantity: np.ndarray, numbers: np.ndarray, prices: np.ndarray) -> str:
    """The first line of bad message ``i``: its price negated, or its product unknown."""
    number, q, price = str(numbers[product[i, 0]]), int(quantity[i, 0]), float(prices[product[i, 0]])
    if BAD_KINDS[kind[i]] == "negative_price":
        return _line_json(number, q, -price, q * price)  # the sales amount stays right, as in the CRM source
    return _line_json(f"ZZ-UNKNOWN-{start + i}", q, price, q * price)


def _order_json() -> pl.Expr:
    """The message value from the frame's columns, as JSON text (see the module docstring)."""
    lines = [pl.when(pl.col("n_lines") > j).then(pl.col(f"line{j}")) for j in range(MAX_LINES)]
    value = pl.concat_str(
        pl.lit('{"event_id":"'), pl.col("event_id"),
        pl.lit('","event_time":"'), pl.col("placed").dt.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00"),
        pl.lit('","order_number":"'), pl.col("order_number"), pl.lit('"'),
        pl.col("customer"),
        pl.lit(',"order_date":"'), pl.col("order_date"),
        pl.lit('","ship_date":"'), pl.col("ship_date"),
        pl.lit('","due_date":"'), pl.col("due_date"),
        pl.lit('","lines":['), pl.concat_str(lines, separator=",", ignore_nulls=True), pl.lit("]}"),
    )
    return pl.when(pl.col("malformed")).then(value.str.slice(0, value.str.len_chars() // 2)).otherwise(value)


def _distinct_products(rng: np.random.Generator, n: int, catalog_size: int) -> np.ndarray:
    """(n, MAX_LINES) product indexes, distinct within each row (as far as the catalog allows)."""
    product = rng.integers(0, catalog_size, (n, MAX_LINES))
    for j in range(1, min(MAX_LINES, catalog_size)):
        while True:
            clash = (product[:, j : j + 1] == product[:, :j]).any(axis=1)
            if not clash.any():
                break
            product[clash, j] = rng.integers(0, catalog_size, int(clash.sum()))
    return product


def _uuid4_hex(rng: np.random.Generator, n: int) -> list[str]:
    """n random (seeded) UUID4s as 32-char hex strings, with the version and variant bits set."""
    raw = rng.integers(0, 256, (n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    text = raw.tobytes().hex()
    return [text[i : i + 32] for i in range(0, 32 * n, 32)]
