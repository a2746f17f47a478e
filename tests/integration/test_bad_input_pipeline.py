"""The real command line on bad input: row problems land (quarantined with their line numbers,
counts reconciling, exit 0); file problems are refused (exit 1, one line naming the file)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from logistics_pipeline.tasks.core.contract import BRONZE_ERROR
from logistics_pipeline.tasks.core.quality import RULE_COLUMN
from logistics_pipeline.tasks.core.runner import recorded_counts
from logistics_pipeline.tasks.core.silver import SILVER_TABLES
from logistics_pipeline.tasks.local.lake import Lake
from logistics_pipeline.tasks.local.store import DeltaStore
from tests.cli_runner import run_cli

pytestmark = pytest.mark.usefixtures("prefect_server")



def edit_lines(path: Path, edits: dict[int, bytes]) -> None:
    """Replace physical lines (1 = header) of a CRLF file; the line count stays the same."""
    lines = path.read_bytes().split(b"\r\n")
    for number, line in edits.items():
        lines[number - 1] = line
    path.write_bytes(b"\r\n".join(lines))


def line(path: Path, number: int) -> bytes:
    return path.read_bytes().split(b"\r\n")[number - 1]


def test_row_problems_are_quarantined_with_their_lines_and_the_rest_lands(tmp_path, sources):
    sales = sources / "source_crm" / "sales_details.csv"
    edit_lines(sales, {
        10: line(sales, 10) + b",extra,fields",                      # 11 fields
        20: b",".join(line(sales, 20).split(b",")[:3]),              # 3 fields (a truncated line)
        30: line(sales, 30).replace(b",", b',"', 1),                 # an unterminated quote
        40: line(sales, 40).replace(b",", b",\x00", 1),              # a NUL in a field
        50: b"",                                                      # a blank line
    })
    locations = sources / "source_erp" / "LOC_A101.csv"  # (a quarantined CRM customer would orphan its sales in gold)
    edit_lines(locations, {15: line(locations, 15).split(b",")[0]})
    categories = sources / "source_erp" / "PX_CAT_G1V2.csv"
    edit_lines(categories, {3: line(categories, 3).replace(b",", b',"Two\r\nline ""quoted"" name",', 1).rsplit(b",", 1)[0]})

    lake = tmp_path / "lake"
    result = run_cli("run", "--source-dir", str(sources), "--lake", str(lake))
    assert result.returncode == 0, result.stderr

    expected = {"crm_sales_details": {10, 20, 30, 40, 50}, "erp_loc_a101": {15}}
    for table in SILVER_TABLES:
        bronze = pl.read_delta(str(lake / "bronze" / table.bronze))
        silver = pl.read_delta(str(lake / "silver" / table.name))
        quarantine = pl.read_delta(str(lake / "quarantine" / table.name))
        counts = recorded_counts(DeltaStore(Lake(str(lake))), table.name)
        assert (counts.rows_in, counts.rows_out, counts.quarantined) == (bronze.height, silver.height, quarantine.height)
        assert bronze.height == silver.height + quarantine.height + counts.merged_duplicates, table.name
        malformed = quarantine.filter(pl.col(RULE_COLUMN) == "malformed_row")
        assert set(malformed["_line"].to_list()) == expected.get(table.name, set()), table.name
        assert malformed[BRONZE_ERROR].null_count() == 0
    reasons = dict(pl.read_delta(str(lake / "quarantine" / "crm_sales_details")).filter(pl.col(RULE_COLUMN) == "malformed_row").select("_line", BRONZE_ERROR).rows())
    assert reasons[10] == "expected 9 fields, found 11; extra: 'extra,fields'"
    assert reasons[20] == "expected 9 fields, found 3"
    assert reasons[30].startswith("unterminated quoted field")
    assert reasons[40] == "field sls_prd_key contains a NUL or control character"
    assert reasons[50] == "blank line"

    # a quoted field spanning two lines lands whole; the rows after it keep their physical line numbers
    bronze_categories = pl.read_delta(str(lake / "bronze" / "erp_px_cat_g1v2")).sort("_line")
    assert bronze_categories.filter(pl.col("_line") == 3)["CAT"].to_list() == ['Two\r\nline "quoted" name']
    assert bronze_categories["_line"].to_list()[2:4] == [5, 6]
    assert bronze_categories[BRONZE_ERROR].null_count() == bronze_categories.height


def duplicate_header(path: Path) -> None:
    edit_lines(path, {1: line(path, 1) + b",sls_price"})


def latin1(path: Path) -> None:
    edit_lines(path, {7: line(path, 7) + "é".encode("latin-1")})


def utf16(path: Path) -> None:
    path.write_bytes(path.read_bytes().decode("utf-8").encode("utf-16"))


def header_nul(path: Path) -> None:
    edit_lines(path, {1: line(path, 1).replace(b"sls_", b"sls\x00", 1)})


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (duplicate_header, "duplicate column names in header: sls_price"),
        (latin1, "not valid UTF-8 (byte 0xe9 at offset "),
        (utf16, "encoded as UTF-16 (byte order mark ff fe), not UTF-8; re-export the file as UTF-8"),
        (header_nul, "not a text file (NUL byte at offset 3)"),
    ],
    ids=["duplicate-header", "latin-1", "utf-16", "nul-in-header"],
)
def test_file_problems_are_refused_in_one_line_naming_the_file(tmp_path, sources, damage, problem):
    target = sources / "source_crm" / "sales_details.csv"
    damage(target)
    lake = tmp_path / "lake"
    result = run_cli("run", "--source-dir", str(sources), "--lake", str(lake))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {target}: {problem}")
    assert "Traceback" not in result.stderr
    assert not (lake / "bronze").exists(), "a refused file must leave no table behind"
