"""How the `quarantine` command names rows and refuses unknown names (pure functions; the
command on a real lake is in tests/integration/test_operator_tools.py)."""

from __future__ import annotations

import pytest

from logistics_pipeline.tasks.core.stream import STREAM_RULES
from logistics_pipeline.tasks.errors import PipelineError
from logistics_pipeline.tasks.local.quarantine import (
    QUARANTINE_TABLES,
    QuarantinedRow,
    Selection,
    check_filters,
    message_position,
    quarantine_schema,
    render,
    rule_names,
)


def test_every_table_has_its_rules_in_the_order_they_are_checked():
    assert rule_names("crm_cust_info")[:2] == ("malformed_row", "missing_customer_id")
    assert rule_names("stream_orders") == tuple(rule.name for rule in STREAM_RULES)
    assert set(QUARANTINE_TABLES) == {"crm_cust_info", "crm_prd_info", "crm_sales_details", "erp_cust_az12", "erp_loc_a101", "erp_px_cat_g1v2", "stream_orders"}


@pytest.mark.parametrize(
    ("table", "rule", "message"),
    [
        ("customers", None, "no quarantine table 'customers'; the tables are crm_cust_info, "),
        ("crm_cust_info", "not_json", "no rule 'not_json' of crm_cust_info; the rules are malformed_row, missing_customer_id, "),
        (None, "no_such_rule", "no rule 'no_such_rule' of any table; the rules are "),
    ],
)
def test_an_unknown_table_or_rule_is_refused_naming_the_known_ones(table, rule, message):
    with pytest.raises(PipelineError) as refused:
        check_filters(table, rule)
    assert str(refused.value).startswith(message)


def test_known_names_pass():
    check_filters("stream_orders", "not_json")
    check_filters(None, "missing_customer_id")
    check_filters(None, None)


def test_a_message_is_placed_by_topic_partition_and_offset_or_by_landing_file_and_offset():
    kafka = {"_source": "orders", "partition": 2, "offset": 41, "_line_index": None}
    assert message_position(kafka) == "topic orders partition 2 offset 41"
    landing = {"_source": "landing/orders/a.jsonl", "partition": None, "offset": 7, "_line_index": 1}
    assert message_position(landing) == "landing/orders/a.jsonl offset 7, lines[1]"


def test_rows_print_as_aligned_columns_and_say_what_was_left_out():
    rows = [
        QuarantinedRow("crm_cust_info", "missing_customer_id", "source_crm/cust_info.csv line 12", "ab12", '{"cst_id": null}'),
        QuarantinedRow("stream_orders", "not_json", "topic orders partition 0 offset 3", None, "{oops"),
    ]
    lines = render(Selection(rows, matching=5))
    assert lines[0].split() == ["table", "rule", "where", "batch", "received"]
    assert lines[1].index("missing_customer_id") == lines[2].index("not_json") == lines[0].index("rule")
    assert lines[1].endswith('{"cst_id": null}') and lines[2].endswith("{oops")
    assert lines[-1] == "2 of 5 quarantined rows shown; --limit shows more"
    assert render(Selection([], matching=0)) == ["0 quarantined rows"]


def test_the_quarantine_layout_is_the_rule_then_the_row_as_received():
    """What a table not written yet stands for (its empty table is built in tests/integration:
    an empty pyarrow table imports pandas, 0.4 s)."""
    assert quarantine_schema("crm_cust_info").names == [
        "_rule", "cst_id", "cst_key", "cst_firstname", "cst_lastname", "cst_marital_status", "cst_gndr",
        "cst_create_date", "_line", "_ingested_at", "_source", "_batch_id", "_bronze_error",
    ]
    assert quarantine_schema("stream_orders").names[:3] == ["_rule", "value", "_line_index"]
