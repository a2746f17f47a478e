"""The synthetic order generator: deterministic, well-formed, referentially sound, bad on purpose."""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from datetime import date, datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest

from logistics_pipeline.tasks.core.orders import BAD_KINDS, bad_count, generate_orders
from logistics_pipeline.tasks.errors import PipelineError
from logistics_pipeline.tasks.local.order_catalog import reference_data
from logistics_pipeline.tasks.settings import DEFAULT_SOURCE_DIR

NOW = datetime(2026, 11, 26, 13, 0, 0, 123456, tzinfo=timezone.utc)
CUSTOMERS = np.arange(11000, 11100)
PRODUCTS = {"BK-R93R-62": 3578.0, "BK-M68B-38": 2295.0, "HL-U509": 35.0, "SO-B909-M": 9.0, "TI-R092": 5.0, "CA-1098": 9.0}
FIELDS = ["event_id", "event_time", "order_number", "customer_id", "order_date", "ship_date", "due_date", "lines"]


def orders(count: int = 2000, seed: int = 1, bad_fraction: float = 0.0, **kwargs):
    return generate_orders(count, seed, CUSTOMERS, PRODUCTS, bad_fraction, NOW, **kwargs)


def check_good(key: bytes, value: bytes) -> dict:
    """Everything the module docstring promises about a good message."""
    order = json.loads(value)
    assert list(order) == FIELDS
    assert key == order["order_number"].encode()
    assert re.fullmatch(r"ST[0-9]{16}", order["order_number"])
    assert uuid.UUID(hex=order["event_id"]).version == 4 and len(order["event_id"]) == 32
    placed = datetime.fromisoformat(order["event_time"])
    assert placed.utcoffset() == timedelta(0)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", order["event_time"])
    assert NOW - timedelta(days=30) < placed <= NOW
    order_date = date.fromisoformat(order["order_date"])
    assert order_date == placed.date()
    assert date.fromisoformat(order["ship_date"]) == order_date + timedelta(days=7)
    assert date.fromisoformat(order["due_date"]) == order_date + timedelta(days=12)
    assert order["customer_id"] in set(CUSTOMERS.tolist())
    assert 1 <= len(order["lines"]) <= 4
    products = [line["product_number"] for line in order["lines"]]
    assert len(set(products)) == len(products)
    for line in order["lines"]:
        assert list(line) == ["product_number", "quantity", "price", "sales_amount"]
        assert line["product_number"] in PRODUCTS
        assert line["price"] == PRODUCTS[line["product_number"]] > 0
        assert isinstance(line["quantity"], int) and 1 <= line["quantity"] <= 3
        assert line["sales_amount"] == line["quantity"] * line["price"]
    return order


def test_good_orders_follow_the_schema():
    batch = orders(3000)
    assert len(batch) == 3000 and batch.bad_messages == 0
    parsed = [check_good(key, value) for key, value in batch.messages]
    assert batch.order_lines == batch.good_order_lines == sum(len(order["lines"]) for order in parsed)
    assert batch.lines.tolist() == [len(order["lines"]) for order in parsed]
    assert len({order["event_id"] for order in parsed}) == 3000
    assert len(set(batch.keys)) == 3000
    assert {len(order["lines"]) for order in parsed} == {1, 2, 3, 4}
    assert len({order["customer_id"] for order in parsed}) > 50  # spread over the customers


def test_deterministic_for_seed_and_now():
    first, again = orders(500, seed=7, bad_fraction=0.2), orders(500, seed=7, bad_fraction=0.2)
    assert first.values == again.values and first.keys == again.keys and first.bad_kinds == again.bad_kinds
    other = orders(500, seed=8, bad_fraction=0.2)
    assert other.values != first.values
    assert not set(other.keys) & set(first.keys)  # runs with different seeds never share an order number


def test_chunks_continue_the_numbering_and_spread_bad_messages_exactly():
    whole = orders(1000, bad_fraction=0.13)
    chunks = [orders(300, bad_fraction=0.13, start=start) for start in (0, 300, 600)] + [orders(100, bad_fraction=0.13, start=900)]
    assert [key for chunk in chunks for key in chunk.keys] == whole.keys
    assert sum(chunk.bad_messages for chunk in chunks) == whole.bad_messages == 130
    kinds = Counter(kind for chunk in chunks for kind in chunk.bad_kinds if kind)
    assert set(kinds) == set(BAD_KINDS) and max(kinds.values()) - min(kinds.values()) <= 1
    assert sum(bad_count(start, 7, 0.3)[1] for start in range(0, 700, 7)) == 210


def test_never_collides_with_crm_order_numbers():
    crm = pl.read_csv(DEFAULT_SOURCE_DIR / "source_crm" / "sales_details.csv", columns=["sls_ord_num"], infer_schema=False)
    crm_numbers = set(crm["sls_ord_num"].to_list())
    assert all(number.startswith("SO") for number in crm_numbers)
    stream = {key.decode() for key in orders(1000, seed=0).keys}
    assert not stream & crm_numbers
    assert min(stream) == "ST0000000000000000"


@pytest.mark.parametrize("fraction", [0.1, 0.5])
def test_bad_messages_are_the_promised_kinds(fraction):
    batch = orders(1000, bad_fraction=fraction)
    expected = round(1000 * fraction)
    assert batch.bad_messages == expected
    kinds = Counter(kind for kind in batch.bad_kinds if kind)
    assert kinds == {kind: expected // len(BAD_KINDS) for kind in BAD_KINDS}
    good_lines = units = 0
    for (key, value), kind, n_lines in zip(batch.messages, batch.bad_kinds, batch.lines.tolist(), strict=True):
        assert b"\n" not in value
        assert key.startswith(b"ST")
        if kind is None:
            check_good(key, value)
            good_lines += n_lines
            units += n_lines
        elif kind == "malformed_json":
            with pytest.raises(json.JSONDecodeError):
                json.loads(value)
            units += 1  # silver counts a message that is not JSON as one line
        else:
            order = json.loads(value)
            units += n_lines
            if kind == "negative_price":
                good_lines += n_lines - 1  # only the first line is bad
            elif kind == "unknown_product":
                good_lines += n_lines  # gold points the line to the unknown product
            assert order["order_number"].encode() == key
            if kind == "missing_customer_id":
                assert "customer_id" not in order
            elif kind == "negative_price":
                line = order["lines"][0]
                assert line["price"] < 0 and line["sales_amount"] == line["quantity"] * -line["price"]
            elif kind == "ship_before_order":
                assert order["ship_date"] < order["order_date"]
            elif kind == "unknown_product":
                assert order["lines"][0]["product_number"] not in PRODUCTS
    assert batch.good_order_lines == good_lines
    assert batch.order_lines == units


def test_all_or_nothing_bad():
    assert orders(100, bad_fraction=0.0).bad_messages == 0
    assert orders(100, bad_fraction=1.0).bad_messages == 100
    assert len(orders(0)) == 0


def test_small_catalog_still_gives_distinct_products():
    batch = generate_orders(200, 1, [1], {"A-1": 10.0, "B-2": 20.0}, 0.0, NOW)
    for value in batch.values:
        numbers = [line["product_number"] for line in json.loads(value)["lines"]]
        assert 1 <= len(numbers) <= 2 and len(set(numbers)) == len(numbers)


def test_rejects_bad_arguments():
    with pytest.raises(PipelineError):
        orders(10, seed=-1)
    with pytest.raises(PipelineError):
        orders(10, bad_fraction=1.5)
    with pytest.raises(PipelineError):
        generate_orders(10, 1, [], PRODUCTS, 0.0, NOW)


def test_reference_data_falls_back_to_the_shipped_csvs(tmp_path):
    reference = reference_data(str(tmp_path / "empty-lake"))
    assert reference.source == "csv"
    assert 11000 in reference.customers.tolist()
    assert len(reference.products) > 100
    for number, price in reference.products.items():
        assert re.fullmatch(r"[A-Z]{2}-[A-Z0-9-]+", number), number  # the product number, category cut off
        assert price >= 2 and price == round(price)
