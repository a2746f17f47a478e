"""The silver runner's decisions on an in-memory store: when it rebuilds, what it writes in
which order, and that counts which do not add up stop the table."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

import narwhals as nw
import polars as pl
import pytest

from logistics_pipeline.tasks.core.quality import CountsDoNotReconcile
from logistics_pipeline.tasks.core.runner import outputs_current, recorded_counts, run_silver_table, run_stream_orders
from logistics_pipeline.tasks.core.silver import SILVER_BY_NAME
from tests.memory_store import MemoryStore

CUSTOMERS = SILVER_BY_NAME["crm_cust_info"]
LOADED = datetime(2026, 1, 1, tzinfo=timezone.utc)


def bronze_customers(*ids: str) -> pl.DataFrame:
    n = len(ids)
    return pl.DataFrame({
        "cst_id": list(ids), "cst_key": [f"AW{i}" for i in range(n)], "cst_firstname": ["Ann"] * n, "cst_lastname": ["Lee"] * n,
        "cst_marital_status": ["M"] * n, "cst_gndr": ["F"] * n, "cst_create_date": ["2025-01-01"] * n,
        "_line": list(range(2, n + 2)), "_ingested_at": [LOADED] * n, "_source": ["c.csv"] * n, "_batch_id": ["b"] * n,
        "_bronze_error": [None] * n,
    }, schema_overrides={"_bronze_error": pl.String, "_line": pl.Int64})


@pytest.fixture
def store() -> MemoryStore:
    store = MemoryStore()
    store.put("bronze", "crm_cust_info", bronze_customers("1", "2", "2", "", "x"))
    return store


def test_counts_are_measured_and_quarantine_is_written_before_silver(store):
    counts = run_silver_table(store, CUSTOMERS)
    assert (counts.rows_in, counts.rows_out, counts.quarantined, counts.merged_duplicates) == (5, 2, 2, 1)
    assert counts.rules == (("missing_customer_id", 1), ("non_numeric_customer_id", 1))
    assert store.writes == [("quarantine", "crm_cust_info"), ("silver", "crm_cust_info"), ("history", "crm_cust_info")]
    assert store.frame("quarantine", "crm_cust_info").columns[0] == "_rule"
    assert recorded_counts(store, "crm_cust_info") == counts


def test_an_unchanged_input_is_not_rebuilt_and_a_new_state_is(store):
    run_silver_table(store, CUSTOMERS)
    run_silver_table(store, CUSTOMERS)
    assert len(store.writes) == 3
    store.put("bronze", "crm_cust_info", bronze_customers("1", "2", "2", "", "x"))  # same rows, another state
    run_silver_table(store, CUSTOMERS)
    assert len(store.writes) == 6
    run_silver_table(store, CUSTOMERS, force=True)
    assert len(store.writes) == 9


def test_a_missing_quarantine_commit_means_a_rebuild(store):
    run_silver_table(store, CUSTOMERS)
    del store.tables[("quarantine", "crm_cust_info")]
    run_silver_table(store, CUSTOMERS)
    assert store.writes[-3:] == [("quarantine", "crm_cust_info"), ("silver", "crm_cust_info"), ("history", "crm_cust_info")]


def test_a_dropped_row_stops_the_table_in_one_line_before_anything_is_written(store):
    def cleanse_that_loses_a_row(frame: nw.LazyFrame) -> nw.LazyFrame:
        return CUSTOMERS.cleanse(frame).filter(nw.col("cst_id") != 1)

    broken = dataclasses.replace(CUSTOMERS, cleanse=cleanse_that_loses_a_row)
    with pytest.raises(CountsDoNotReconcile) as raised:
        run_silver_table(store, broken)
    assert str(raised.value) == "silver table crm_cust_info: counts do not reconcile: 5 in != 1 out + 2 quarantined + 1 merged"
    assert store.writes == []


def test_rows_made_up_after_the_merge_stop_the_table(store):
    def derive_that_doubles_rows(frame: nw.LazyFrame) -> nw.LazyFrame:
        return nw.concat([frame, frame])

    broken = dataclasses.replace(CUSTOMERS, derive=derive_that_doubles_rows)
    with pytest.raises(CountsDoNotReconcile, match="do not reconcile"):
        run_silver_table(store, broken)
    assert store.writes == []


def test_no_bronze_table_is_a_clear_error():
    with pytest.raises(Exception, match="bronze table crm_cust_info does not exist: run the bronze layer first"):
        run_silver_table(MemoryStore(), CUSTOMERS)


def test_without_a_stream_an_empty_stream_orders_is_created_once():
    store = MemoryStore()
    assert run_stream_orders(store) is None
    assert store.frame("silver", "stream_orders").height == 0
    assert run_stream_orders(store) is None
    assert len(store.tables[("silver", "stream_orders")].versions) == 1


def test_history_follows_the_silver_table_and_catches_up_without_rebuilding_it(store):
    """A crash after the silver commit and before the history's: the next run merges the
    history from silver as it is, and does not rebuild silver."""
    first, second = LOADED, datetime(2026, 2, 1, tzinfo=timezone.utc)
    run_silver_table(store, CUSTOMERS, run_at=first)
    history = store.frame("history", "crm_cust_info")
    assert history.select("cst_id", "valid_from", "is_current").sort("cst_id").rows() == [(1, first, True), (2, first, True)]
    assert outputs_current(store, "crm_cust_info", store.last_commit("bronze", "crm_cust_info").state)

    store.put("bronze", "crm_cust_info", bronze_customers("1"))  # customer 2 leaves the export
    run_silver_table(store, dataclasses.replace(CUSTOMERS, keeps_history=False), run_at=second)  # stopped before the history
    assert not outputs_current(store, "crm_cust_info", store.last_commit("bronze", "crm_cust_info").state)
    writes = len(store.writes)
    run_silver_table(store, CUSTOMERS, run_at=second)
    assert store.writes[writes:] == [("history", "crm_cust_info")]
    closed = store.frame("history", "crm_cust_info").filter(pl.col("cst_id") == 2)
    assert closed.select("valid_to", "is_current", "is_deleted").rows() == [(second, False, True)]


def test_recorded_counts_keep_the_rules(store):
    counts = run_silver_table(store, CUSTOMERS)
    assert recorded_counts(store, "crm_cust_info").rules == counts.rules
    assert counts.by_rule == {"missing_customer_id": 1, "non_numeric_customer_id": 1}
