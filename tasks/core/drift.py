"""Schema drift: what the pipeline does when a source's columns change.

## Schema drift policy

Bronze always keeps what arrived; silver decides whether it can carry on.

| change in a source file | bronze | silver |
| --- | --- | --- |
| **new column** | kept, as text, like every column | carries on (it reads only the columns it knows); the silver layer logs a warning per new column and publishes the markdown artifact `schema-drift` listing them |
| **required column removed or renamed** | the file is refused with one line naming the file and the missing column; nothing is written (the previous bronze table stays) | not reached: the bronze layer stops first |
| **changed type** | kept, as text | stops for that table with one line naming the table, the column, the share of bad values and an example, and writes nothing for it (its previous silver and quarantine tables stay); the layer fails |

A type has *changed* when more than half (`THRESHOLD`) of the non-blank values of a typed
column no longer have the shape its silver type is read from (an integer, a decimal number
with a point, a date in the table's layout), counted over the rows bronze read as records,
once there are at least `MIN_VALUES` (20) of them. Big tables are screened on an evenly
spread sample of about `SAMPLE_ROWS` rows first; the share in the error is always counted
in full. The typed columns are declared per table in `TYPED_COLUMNS`:

| table | typed columns |
| --- | --- |
| crm_cust_info | cst_id (integer), cst_create_date (yyyy-mm-dd) |
| crm_prd_info | prd_id (integer), prd_cost (number), prd_start_dt (yyyy-mm-dd) |
| crm_sales_details | sls_cust_id, sls_quantity (integer), sls_sales, sls_price (number), sls_order_dt, sls_ship_dt, sls_due_dt (yyyymmdd) |
| erp_cust_az12 | BDATE (yyyy-mm-dd) |

Below the threshold a value that does not parse is ordinary dirt, and the table's rules
handle it as always (a non-numeric customer id is quarantined, a malformed date becomes
null, an unreadable price is repaired from sales and quantity). The error reads:

    silver crm_sales_details: schema drift: column sls_price: 100% of 5,901 values are not numbers (e.g. '59,50'); fix the export or the rule

Fixing the export (or the rule and `TYPED_COLUMNS`, if the new format is right) and running
again rebuilds the table; nothing needs cleaning up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import narwhals as nw

from logistics_pipeline.tasks.core.contract import BRONZE_ERROR
from logistics_pipeline.tasks.core.silver import (
    _DATE_LAYOUTS,
    INTEGER,
    NUMBER,
    matches,
    text,
    with_bronze_error,
)
from logistics_pipeline.tasks.errors import PipelineError

THRESHOLD = 0.5
"""Share of non-blank values that do not parse above which a column's type has changed."""
MIN_VALUES = 20
"""Fewer non-blank values than this are too few to call a change of type."""
SAMPLE_ROWS = 50_000
"""A bigger table is first checked on an evenly spread sample of about this many rows."""

_KINDS: dict[str, tuple[str, str]] = {
    # kind: (the shape silver parses, what the error calls the values)
    "integer": (INTEGER, "integers"),
    "number": (NUMBER, "numbers"),
    "yyyymmdd": (_DATE_LAYOUTS["yyyymmdd"][0], "dates (yyyymmdd)"),
    "yyyy-mm-dd": (_DATE_LAYOUTS["yyyy-mm-dd"][0], "dates (yyyy-mm-dd)"),
}

TYPED_COLUMNS: dict[str, dict[str, str]] = {
    "crm_cust_info": {"cst_id": "integer", "cst_create_date": "yyyy-mm-dd"},
    "crm_prd_info": {"prd_id": "integer", "prd_cost": "number", "prd_start_dt": "yyyy-mm-dd"},
    "crm_sales_details": {
        "sls_cust_id": "integer",
        "sls_order_dt": "yyyymmdd",
        "sls_ship_dt": "yyyymmdd",
        "sls_due_dt": "yyyymmdd",
        "sls_sales": "number",
        "sls_quantity": "integer",
        "sls_price": "number",
    },
    "erp_cust_az12": {"BDATE": "yyyy-mm-dd"},
}
"""Per silver table: the bronze text columns silver types, and the type (a key of ``_KINDS``)."""


class SchemaDriftError(PipelineError):
    """A typed column whose values mostly no longer parse: silver stops for that table."""


@dataclass(frozen=True)
class DriftFinding:
    """One change in a source's columns that silver carries on through (with a warning)."""

    table: str
    source: str
    column: str
    change: str

    @property
    def message(self) -> str:
        return f"schema drift in {self.source} (bronze {self.table}): {self.change} {self.column!r}; kept in bronze, not used by silver"


def check_types(table: str, bronze: nw.LazyFrame, rows: int | None = None) -> None:
    """Raise ``SchemaDriftError`` when a typed column of ``table`` mostly no longer parses.

    A value parses when it has the shape silver reads (an impossible date such as Feb 30 has
    the shape: that is dirt for the rules, not drift). Any narwhals backend. With ``rows``
    above ``SAMPLE_ROWS``, an evenly spread sample (by ``_line``) is checked first and only a
    column that fails there is counted in full, so the shares in the error are exact."""
    typed = {column: kind for column, kind in TYPED_COLUMNS.get(table, {}).items() if column in bronze.columns}
    if not typed:
        return
    records = with_bronze_error(bronze).filter(nw.col(BRONZE_ERROR).is_null())
    sample = records
    if rows is not None and rows > SAMPLE_ROWS and "_line" in bronze.columns:
        sample = records.filter(nw.col("_line") % math.ceil(rows / SAMPLE_ROWS) == 0)
    for column, (values, bad) in _tally(sample, typed).items():
        if sample is not records and _drifted(values, bad):
            values, bad = _tally(records, {column: typed[column]})[column]
        if _drifted(values, bad):
            unparsed = records.filter(_unparsed(column, typed[column]))
            if "_line" in bronze.columns:  # the first in the file: bronze rows are stored in no particular order
                unparsed = unparsed.sort("_line")
            example = unparsed.select(nw.col(column)).head(1).collect().rows()[0][0]
            raise SchemaDriftError(
                f"silver {table}: schema drift: column {column}: {_percent(bad / values)} of {values:,} values are not "
                f"{_KINDS[typed[column]][1]} (e.g. {_example(example)}); fix the export or the rule"
            )


def _tally(frame: nw.LazyFrame, typed: dict[str, str]) -> dict[str, tuple[int, int]]:
    """Per column: (non-blank values, values that do not parse), in one aggregate pass."""
    aggregates = []
    for index, (column, kind) in enumerate(typed.items()):
        aggregates += [
            (~text(column).is_null()).cast(nw.Int64()).sum().alias(f"values_{index}"),
            _unparsed(column, kind).cast(nw.Int64()).sum().alias(f"bad_{index}"),
        ]
    totals = frame.select(*aggregates).collect().rows(named=True)[0]
    return {column: (totals[f"values_{i}"] or 0, totals[f"bad_{i}"] or 0) for i, column in enumerate(typed)}


def _drifted(values: int, bad: int) -> bool:
    return values >= MIN_VALUES and bad > THRESHOLD * values


def _unparsed(column: str, kind: str) -> nw.Expr:
    value = text(column)
    return (~value.is_null() & ~matches(value, _KINDS[kind][0])).fill_null(False)


def _percent(share: float) -> str:
    """Floor to one decimal, so that 99.96% never reads as 100%."""
    return f"{math.floor(share * 1000) / 10:g}%"


def _example(value: str | None) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def drift_markdown(findings: list[DriftFinding]) -> str:
    """The ``schema-drift`` artifact: one row per finding, and what the policy does about it."""
    lines = [
        "# Schema drift",
        "",
        "Bronze keeps these columns as received; silver does not use them and carried on.",
        "Add them to `tasks/core/contract.py` and a silver rule if they are wanted downstream.",
        "",
        "| source file | bronze table | change | column |",
        "| --- | --- | --- | --- |",
        *[f"| `{_cell(f.source)}` | `{f.table}` | {f.change} | `{_cell(f.column)}` |" for f in findings],
    ]
    return "\n".join(lines)


def _cell(text: str) -> str:
    """A name as a markdown table cell: no pipe, backtick or line break can break the table."""
    return " ".join(text.replace("|", "\\|").replace("`", "'").split())
