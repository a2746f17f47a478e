"""The schema drift policy (tasks/core/drift.py), one test per case, on real Delta tables:
a new column carries on with a warning finding, a removed column is refused by bronze, a
changed type stops silver for that table and leaves it as it was."""

from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from logistics_pipeline.tasks.core.contract import SOURCES_BY_TABLE
from logistics_pipeline.tasks.core.csv_source import SourceFileError, fingerprint_csv
from logistics_pipeline.tasks.core.drift import DriftFinding, SchemaDriftError, drift_markdown
from logistics_pipeline.tasks.core.runner import run_silver_table
from logistics_pipeline.tasks.core.silver import SILVER_BY_NAME
from logistics_pipeline.tasks.local import lake as lake_io
from logistics_pipeline.tasks.local.bronze import ingest_csv, new_bronze_columns
from logistics_pipeline.tasks.local.lake import Lake
from logistics_pipeline.tasks.local.store import DeltaStore

SHIPPED = Path(__file__).resolve().parents[2] / "datasets"


@pytest.fixture
def sources(tmp_path) -> Path:
    copy = tmp_path / "sources"
    shutil.copytree(SHIPPED / "source_crm", copy / "source_crm")
    shutil.copytree(SHIPPED / "source_erp", copy / "source_erp")
    return copy


def bronze_and_silver(sources: Path, lake: Lake, table: str):
    source = SOURCES_BY_TABLE[table]
    path = source.path(sources)
    ingest_csv(path, source, lake.uri("bronze", table), fingerprint_csv(path, source))
    return run_silver_table(DeltaStore(lake), SILVER_BY_NAME[table])


def rewrite(path: Path, change: Callable[[list[str], list[list[str]]], tuple[list[str], list[list[str]]]]) -> None:
    """Rewrite a CSV through ``change(header, rows)``, as an export tool would write it (CRLF, minimal quoting)."""
    with path.open(newline="", encoding="utf-8") as handle:
        header, *rows = list(csv.reader(handle))
    header, rows = change(header, rows)
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows([header, *rows])
    path.write_text(out.getvalue(), encoding="utf-8", newline="")


def test_a_new_column_is_kept_in_bronze_and_silver_carries_on_with_a_warning(sources, tmp_path):
    rewrite(sources / "source_crm/cust_info.csv", lambda h, rows: ([*h, "cst_email"], [[*r, f"c{i}@example.com"] for i, r in enumerate(rows)]))
    lake = Lake(str(tmp_path / "lake"))
    counts = bronze_and_silver(sources, lake, "crm_cust_info")

    bronze = pl.read_delta(lake.uri("bronze", "crm_cust_info"))
    assert bronze["cst_email"].null_count() == 0
    silver = pl.read_delta(lake.uri("silver", "crm_cust_info"))
    assert "cst_email" not in silver.columns and silver.height == counts.rows_out > 0
    findings = new_bronze_columns(lake)
    assert findings == [DriftFinding("crm_cust_info", "source_crm/cust_info.csv", "cst_email", "new column")]
    assert findings[0].message == (
        "schema drift in source_crm/cust_info.csv (bronze crm_cust_info): new column 'cst_email'; kept in bronze, not used by silver"
    )
    assert "| `source_crm/cust_info.csv` | `crm_cust_info` | new column | `cst_email` |" in drift_markdown(findings)


def test_no_findings_without_new_columns(sources, tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    bronze_and_silver(sources, lake, "crm_cust_info")
    assert new_bronze_columns(lake) == []


@pytest.mark.parametrize("column", ["cst_gndr", "cst_id"])
def test_a_removed_required_column_is_refused_by_bronze_and_bronze_stays_as_it_was(sources, tmp_path, column):
    lake = Lake(str(tmp_path / "lake"))
    bronze_and_silver(sources, lake, "crm_cust_info")
    version = lake_io.table_version(lake.uri("bronze", "crm_cust_info"))

    def drop(header, rows):
        index = header.index(column)
        return [h for i, h in enumerate(header) if i != index], [[v for i, v in enumerate(r) if i != index] for r in rows]

    path = sources / "source_crm/cust_info.csv"
    rewrite(path, drop)
    with pytest.raises(SourceFileError) as error:
        fingerprint_csv(path, SOURCES_BY_TABLE["crm_cust_info"])
    assert str(error.value).startswith(f"{path}: header does not match the expected columns: missing {column} (found ")
    assert lake_io.table_version(lake.uri("bronze", "crm_cust_info")) == version


def _replace(column: str, value: Callable[[str], str], every: int = 1):
    def change(header, rows):
        index = header.index(column)
        for number, row in enumerate(rows):
            if row[index].strip() and number % every == 0:
                row[index] = value(row[index])
        return header, rows

    return change


def _values(sources: Path, table: str, column: str) -> int:
    frame = pl.read_csv(SOURCES_BY_TABLE[table].path(sources), infer_schema=False)
    return frame.filter(pl.col(column).str.strip_chars().str.len_chars() > 0).height


CHANGED_TYPES = {
    "decimal comma prices": ("crm_sales_details", "sls_price", lambda v: f"{v},50", "numbers"),
    "iso order dates": ("crm_sales_details", "sls_order_dt", lambda v: f"{v[:4]}-{v[4:6]}-{v[6:]}", "dates (yyyymmdd)"),
    "day-first create dates": ("crm_cust_info", "cst_create_date", lambda v: f"{v[8:]}.{v[5:7]}.{v[:4]}", "dates (yyyy-mm-dd)"),
}


@pytest.mark.parametrize("case", sorted(CHANGED_TYPES))
def test_a_changed_type_stops_silver_for_that_table_and_leaves_it_as_it_was(sources, tmp_path, case):
    table, column, change, kind = CHANGED_TYPES[case]
    lake = Lake(str(tmp_path / "lake"))
    bronze_and_silver(sources, lake, table)
    before = {layer: pl.read_delta(lake.uri(layer, table)) for layer in ("silver", "quarantine")}
    versions = {layer: lake_io.table_version(lake.uri(layer, table)) for layer in ("silver", "quarantine")}

    rewrite(SOURCES_BY_TABLE[table].path(sources), _replace(column, change))
    first = pl.read_csv(SOURCES_BY_TABLE[table].path(sources), infer_schema=False).filter(pl.col(column).str.strip_chars().str.len_chars() > 0)[column][0]
    values = _values(sources, table, column)
    with pytest.raises(SchemaDriftError) as error:
        bronze_and_silver(sources, lake, table)
    assert str(error.value) == (
        f"silver {table}: schema drift: column {column}: 100% of {values:,} values are not {kind} "
        f"(e.g. {first!r}); fix the export or the rule"
    )
    assert lake_io.table_version(lake.uri("bronze", table)) == 1, "bronze keeps what arrived"
    for layer in ("silver", "quarantine"):
        assert lake_io.table_version(lake.uri(layer, table)) == versions[layer]
        assert_frame_equal(pl.read_delta(lake.uri(layer, table)), before[layer])


def test_below_the_threshold_bad_values_are_left_to_the_rules(sources, tmp_path):
    table = "crm_sales_details"
    rewrite(SOURCES_BY_TABLE[table].path(sources), _replace("sls_price", lambda v: f"{v},50", every=10))
    lake = Lake(str(tmp_path / "lake"))
    counts = bronze_and_silver(sources, lake, table)
    silver = pl.read_delta(lake.uri("silver", table))
    assert counts.rows_in == counts.rows_out + counts.quarantined + counts.merged_duplicates
    assert silver.height == counts.rows_out > 5000
    assert silver["sls_price"].null_count() == 0, "an unreadable price is repaired from sales / quantity, as the rule says"


def test_a_big_table_is_screened_on_a_sample_and_the_error_counts_in_full(sources, tmp_path, monkeypatch):
    from logistics_pipeline.tasks.core import drift

    monkeypatch.setattr(drift, "SAMPLE_ROWS", 500)
    table = "crm_sales_details"
    rewrite(SOURCES_BY_TABLE[table].path(sources), _replace("sls_quantity", lambda v: f"{v}.0"))
    with pytest.raises(SchemaDriftError, match=rf"column sls_quantity: 100% of {_values(sources, table, 'sls_quantity'):,} values are not integers \(e\.g\. '1\.0'\)"):
        bronze_and_silver(sources, Lake(str(tmp_path / "lake")), table)
    assert not (tmp_path / "lake" / "silver" / table).exists()
