"""Quality results over time: the rows a run appends, the thresholds that warn or fail the
silver layer in one line, and the report ``logistics-pipeline quality`` prints."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from logistics_pipeline.tasks.core.quality import CountsDoNotReconcile, TableCounts
from logistics_pipeline.tasks.core.quality_log import RULES_BY_TABLE, quality_report, quality_rows, record_quality, trend
from logistics_pipeline.tasks.core.thresholds import QualityThresholdExceeded, breaches, enforce
from logistics_pipeline.tasks.errors import PipelineError
from tests.memory_store import MemoryStore

RUN_AT = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
SALES = TableCounts("crm_sales_details", 1000, 960, 30, 10, rules=(("unrecoverable_price", 20), ("invalid_ship_date", 10)))
CUSTOMERS = TableCounts("crm_cust_info", 500, 499, 1, 0, rules=(("missing_customer_id", 1),))


def test_rules_must_add_up_to_the_quarantined_rows_and_json_lists_become_pairs():
    assert TableCounts("t", 3, 1, 2, 0, rules=[["a", 1], ["b", 1]]).rules == (("a", 1), ("b", 1))
    with pytest.raises(CountsDoNotReconcile, match="2 rows quarantined, but its rules quarantined 1 \\(a\\)"):
        TableCounts("t", 3, 1, 2, 0, rules=(("a", 1),))


def test_a_run_appends_one_row_per_table_and_rule_zeros_included():
    store = MemoryStore()
    rows = record_quality(store, [SALES, CUSTOMERS], run_id="run-1", engine="local", run_at=RUN_AT)
    assert store.writes == [("quality", "silver")]
    assert rows.height == len(RULES_BY_TABLE["crm_sales_details"]) + len(RULES_BY_TABLE["crm_cust_info"])
    price = rows.filter(pl.col("rule") == "unrecoverable_price").row(0, named=True)
    assert price == {
        "run_id": "run-1", "run_at": RUN_AT, "engine": "local", "table_name": "crm_sales_details", "rule": "unrecoverable_price",
        "rows_in": 1000, "rows_out": 960, "quarantined": 30, "merged_duplicates": 10, "rule_quarantined": 20,
    }
    assert rows.filter(pl.col("rule") == "invalid_quantity")["rule_quarantined"].to_list() == [0]
    record_quality(store, [SALES], run_id="run-2", engine="local", run_at=RUN_AT + timedelta(hours=1))
    assert store.frame("quality", "silver")["run_id"].unique().sort().to_list() == ["run-1", "run-2"]


def test_counts_recorded_before_rules_were_counted_give_one_row_without_a_rule():
    rows = quality_rows([TableCounts("erp_loc_a101", 10, 8, 2, 0)], "r", RUN_AT, "spark")
    assert rows.select("rule", "rule_quarantined").rows() == [(None, 2)]


def test_a_share_over_a_fail_limit_fails_in_one_line_naming_the_rule_and_the_share():
    with pytest.raises(QualityThresholdExceeded) as raised:
        enforce([SALES, CUSTOMERS], warn={}, fail={"unrecoverable_price": 0.01})
    message = str(raised.value)
    assert "\n" not in message
    assert message == (
        "silver crm_sales_details: rule unrecoverable_price quarantined 2.00% of its rows (20 of 1000), "
        "over the limit of 1.00% (LOGISTICS_QUALITY_FAIL_SHARE unrecoverable_price)"
    )


def test_limits_at_or_above_the_share_pass_and_warn_limits_only_warn():
    assert enforce([SALES], warn={}, fail={"unrecoverable_price": 0.02, "crm_sales_details": 0.5}) == []
    warnings = enforce([SALES, CUSTOMERS], warn={"crm_sales_details": 0.01}, fail={})
    assert warnings == [
        "silver crm_sales_details: its rules together quarantined 3.00% of its rows (30 of 1000), "
        "over the limit of 1.00% (LOGISTICS_QUALITY_WARN_SHARE crm_sales_details)"
    ]


def test_the_most_specific_key_wins():
    limits = {"missing_customer_id": 0.0, "crm_cust_info.missing_customer_id": 0.01}
    assert breaches([CUSTOMERS], limits) == []
    assert [b.key for b in breaches([CUSTOMERS], {"missing_customer_id": 0.0})] == ["missing_customer_id"]


def test_a_limit_naming_no_table_or_rule_is_refused_before_anything_runs():
    with pytest.raises(PipelineError, match="LOGISTICS_QUALITY_FAIL_SHARE: 'unrecoverable_prise' is not a silver table, rule or table.rule"):
        enforce([SALES], warn={}, fail={"unrecoverable_prise": 0.1})
    with pytest.raises(PipelineError, match="not a share between 0 and 1"):
        enforce([SALES], warn={"crm_sales_details": 5}, fail={})


def test_trend_compares_the_latest_share_with_the_runs_before():
    assert trend([0.01]) == "one run, no trend"
    assert trend([0.01, 0.01, 0.0102]) == "steady"
    assert trend([0.01, 0.01, 0.02]) == "rising (+1.00 pt)"
    assert trend([0.02, 0.04, 0.01]) == "falling (-2.00 pt)"


def test_the_report_shows_the_last_runs_per_table_and_rule_with_the_trend():
    runs = [
        quality_rows([TableCounts("crm_sales_details", 1000, 980 - n, 10 + n, 10, rules=(("unrecoverable_price", 10 + n),))],
                     f"run-{n}", RUN_AT + timedelta(days=n), "local")
        for n in range(4)
    ]
    lines = quality_report(pl.concat(runs), runs=3)
    assert lines[0] == "last 3 silver runs (oldest first):"
    assert lines[1].startswith("  run 1: 2026-03-02 12:00:00 UTC  local  run-1")
    assert "crm_sales_details: 1000 in, 977 out, 13 quarantined, 10 merged (run 3)" in lines
    [price] = [line for line in lines if "unrecoverable_price" in line]
    assert "1.10%   1.20%   1.30%" in price and "rising (+0.15 pt)" in price and "(13 of 1000 rows)" in price
    assert lines[-1] == "  10 more rules quarantined nothing in these runs"
    assert quality_report(pl.concat(runs), table="erp_loc_a101") == ["no quality results for table erp_loc_a101"]
