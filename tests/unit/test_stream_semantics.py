"""Event semantics of the order stream on small frames: replays merge, a later event for an
order replaces it, lines for the same product are summed, and every line is counted."""

from __future__ import annotations

import json

import narwhals as nw
import polars as pl

from logistics_pipeline.tasks.core.quality import RULE_COLUMN, accepted
from logistics_pipeline.tasks.core.stream import merge_events, parse_messages, validate
from logistics_pipeline.tasks.local.stream import _frame


def order(number: str, event_id: str, event_time: str, lines: list[tuple[str, int, float]], customer: int = 11000) -> str:
    return json.dumps({
        "event_id": event_id, "event_time": event_time, "order_number": number, "customer_id": customer,
        "order_date": "2026-11-26", "ship_date": "2026-12-03", "due_date": "2026-12-08",
        "lines": [{"product_number": p, "quantity": q, "price": price, "sales_amount": q * price} for p, q, price in lines],
    })


def current_orders(values: list[str], partitions: list[int] | None = None) -> tuple[pl.DataFrame, dict[str, int]]:
    """silver stream_orders for messages arriving in this order, and the lines each step merged."""
    n = len(values)
    bronze = _frame(values, [None] * n, partitions or [0] * n, list(range(n)), [None] * n, ["orders"] * n, ["kafka-orders-0"] * n, "b-0")
    tagged = validate(nw.from_native(parse_messages(bronze).lazy())).collect().to_native()
    assert tagged[RULE_COLUMN].null_count() == tagged.height, "every test message passes the rules"
    steps = merge_events(accepted(nw.from_native(tagged.lazy())))
    heights = [step.collect().to_native().height for step in (steps.typed, steps.first_delivery, steps.latest_event)]
    silver = steps.silver.collect().to_native().sort("sls_ord_num", "sls_prd_key")
    merged = {"replayed": heights[0] - heights[1], "superseded": heights[1] - heights[2], "summed": heights[2] - silver.height}
    return silver, merged


T1, T2 = "2026-11-26T13:00:00+00:00", "2026-11-26T14:00:00+00:00"


def test_two_lines_for_the_same_product_are_summed_not_dropped():
    silver, merged = current_orders([order("SO1", "e1", T1, [("BK-1", 1, 10.0), ("BK-1", 3, 12.0), ("BK-2", 2, 5.0)])])
    assert silver.select("sls_prd_key", "sls_quantity", "sls_sales", "sls_price").rows() == [("BK-1", 4, 46.0, 11.5), ("BK-2", 2, 10.0, 5.0)]
    assert merged == {"replayed": 0, "superseded": 0, "summed": 1}


def test_a_corrected_resend_replaces_the_order_and_its_lines():
    first = order("SO1", "e1", T1, [("BK-1", 1, 10.0), ("BK-2", 1, 5.0)])
    correction = order("SO1", "e2", T2, [("BK-1", 2, 10.0)])
    silver, merged = current_orders([first, correction])
    assert silver.select("sls_prd_key", "sls_quantity", "event_id").rows() == [("BK-1", 2, "e2")]
    assert merged == {"replayed": 0, "superseded": 2, "summed": 0}


def test_the_latest_event_time_wins_whatever_the_arrival_order():
    late_arrival_of_an_old_event = order("SO1", "e1", T1, [("BK-1", 1, 10.0)])
    silver, _ = current_orders([order("SO1", "e2", T2, [("BK-1", 5, 10.0)]), late_arrival_of_an_old_event])
    assert silver.select("sls_quantity", "event_id").rows() == [(5, "e2")]


def test_equal_event_times_are_ordered_by_arrival():
    silver, _ = current_orders([order("SO1", "e1", T1, [("BK-1", 1, 10.0)]), order("SO1", "e2", T1, [("BK-1", 7, 10.0)])])
    assert silver["sls_quantity"].to_list() == [7]


def test_a_replay_of_the_same_event_changes_nothing():
    message = order("SO1", "e1", T1, [("BK-1", 1, 10.0), ("BK-2", 1, 5.0)])
    once, _ = current_orders([message])
    twice, merged = current_orders([message, message, message])
    assert twice.drop("_ingested_at").equals(once.drop("_ingested_at"))
    assert merged == {"replayed": 4, "superseded": 0, "summed": 0}


def test_orders_do_not_affect_each_other():
    silver, merged = current_orders([order("SO1", "e1", T1, [("BK-1", 1, 10.0)]), order("SO2", "e2", T2, [("BK-1", 2, 10.0)])])
    assert silver.select("sls_ord_num", "sls_quantity").rows() == [("SO1", 1), ("SO2", 2)]
    assert merged == {"replayed": 0, "superseded": 0, "summed": 0}


def test_summed_lines_satisfy_gold_amount_test_exactly():
    silver, _ = current_orders([order("SO1", "e1", T1, [("BK-1", 3, 0.1), ("BK-1", 7, 0.3), ("BK-1", 1, 1234.57)])])
    row = silver.row(0, named=True)
    assert row["sls_sales"] == row["sls_quantity"] * row["sls_price"]
