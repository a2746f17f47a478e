"""Bronze CSV ingestion into Delta: text columns, metadata, idempotency, clear refusals, one commit per file."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from logistics_pipeline.tasks.core import csv_source
from logistics_pipeline.tasks.core.contract import SOURCES_BY_TABLE
from logistics_pipeline.tasks.core.csv_source import SourceFileError, fingerprint_csv
from logistics_pipeline.tasks.local import lake
from logistics_pipeline.tasks.local.bronze import ingest_csv
from tests.unit.test_bronze_chunks import chunks

CATEGORIES = SOURCES_BY_TABLE["erp_px_cat_g1v2"]


def write(tmp_path: Path, content: bytes, name: str = "PX_CAT_G1V2.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def ingest(tmp_path: Path, path: Path) -> tuple[int, str]:
    uri = str(tmp_path / "lake" / "bronze" / CATEGORIES.table)
    return ingest_csv(path, CATEGORIES, uri, fingerprint_csv(path, CATEGORIES)), uri


def test_crlf_bom_and_quoting_are_handled_and_every_column_is_text(tmp_path):
    path = write(tmp_path, b'\xef\xbb\xbfID,CAT,SUBCAT,MAINTENANCE\r\nAC_BR,Accessories,"Racks, Bike",Yes\r\n007,"Say ""hi""",, No\r\n')
    rows, uri = ingest(tmp_path, path)
    frame = pl.read_delta(uri)
    assert rows == 2
    assert frame.schema["ID"] == pl.String
    assert frame.select("ID", "CAT", "SUBCAT", "MAINTENANCE").rows() == [
        ("AC_BR", "Accessories", "Racks, Bike", "Yes"),
        ("007", 'Say "hi"', None, " No"),
    ]
    assert frame["_line"].to_list() == [2, 3]
    assert frame["_bronze_error"].to_list() == [None, None]
    assert frame["_source"].unique().to_list() == ["source_erp/PX_CAT_G1V2.csv"]
    assert frame["_batch_id"].unique().to_list() == [fingerprint_csv(path, CATEGORIES).batch_id]
    assert frame["_ingested_at"].null_count() == 0


def test_same_content_is_not_ingested_twice(tmp_path):
    path = write(tmp_path, b"ID,CAT,SUBCAT,MAINTENANCE\r\nAC_BR,Accessories,Bike Racks,Yes\r\n")
    _, uri = ingest(tmp_path, path)
    version = lake.table_version(uri)
    rows, _ = ingest(tmp_path, path)
    assert rows == 1
    assert lake.table_version(uri) == version


def test_new_content_replaces_the_table_in_one_commit(tmp_path):
    path = write(tmp_path, b"ID,CAT,SUBCAT,MAINTENANCE\r\nAC_BR,Accessories,Bike Racks,Yes\r\n")
    _, uri = ingest(tmp_path, path)
    path.write_bytes(b"ID,CAT,SUBCAT,MAINTENANCE\r\nAC_BR,Accessories,Bike Racks,Yes\r\nAC_BS,Accessories,Bike Stands,No\r\n")
    rows, _ = ingest(tmp_path, path)
    assert rows == 2
    assert pl.read_delta(uri).height == 2
    assert lake.table_version(uri) == 1


def test_extra_columns_are_kept_as_received(tmp_path):
    path = write(tmp_path, b"ID,CAT,SUBCAT,MAINTENANCE,NOTE\r\nAC_BR,Accessories,Bike Racks,Yes,new\r\n")
    _, uri = ingest(tmp_path, path)
    assert pl.read_delta(uri)["NOTE"].to_list() == ["new"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"ID,CAT,SUBCAT\r\nAC_BR,Accessories,Bike Racks\r\n", "missing MAINTENANCE"),
        (b"ID,CATEGORY,SUBCAT,MAINTENANCE\r\nAC_BR,Accessories,Bike Racks,Yes\r\n", "missing CAT"),
        (b"", "file is empty"),
        (b"\r\n\r\n", "file is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a text file"),
        (b"ID,CAT,SUBCAT,MAINTENANCE\r\nAC_BR,Acc\xe9ssories,Bike Racks,Yes\r\n", "not valid UTF-8 (byte 0xe9"),
        (b"ID,CAT,CAT,SUBCAT,MAINTENANCE\r\n", "duplicate column names in header: CAT"),
        (b"ID,CAT,SUBCAT,MAINTENANCE,\r\nA,B,C,D,\r\n", "header has a column without a name (column 5)"),
        (b"ID,CAT,SUBCAT,MAINTENANCE,_line\r\n", "header uses a name reserved for load metadata: _line"),
        (b"ID,CAT,SUBCAT,MAINTENANCE\rAC_BR,Accessories,Bike Racks,Yes\r", "lines end with a bare CR"),
        (b"ID,C\x00AT,SUBCAT,MAINTENANCE\r\n", "not a text file (NUL byte at offset 4)"),
        ("ID,CAT,SUBCAT,MAINTENANCE\r\n".encode("utf-16"), "encoded as UTF-16 (byte order mark ff fe)"),
        ("ID,CAT,SUBCAT,MAINTENANCE\r\n".encode("utf-32"), "encoded as UTF-32 (byte order mark ff fe 00 00)"),
        (b"ID,CAT,SUBCAT,MAINTENANCE\r\n" + b"\x00\x01\x02\x03" * 64, "not a text file (NUL byte at offset 27)"),
    ],
)
def test_bad_files_are_refused_with_the_file_and_the_problem(tmp_path, content, problem):
    path = write(tmp_path, content)
    with pytest.raises(SourceFileError) as error:
        fingerprint_csv(path, CATEGORIES)
    assert str(path) in str(error.value)
    assert problem in str(error.value)
    assert "\n" not in str(error.value)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(SourceFileError, match="PX_CAT_G1V2.csv: file not found"):
        fingerprint_csv(tmp_path / "PX_CAT_G1V2.csv", CATEGORIES)


def bronze_rows(tmp_path: Path, content: bytes) -> pl.DataFrame:
    _, uri = ingest(tmp_path, write(tmp_path, content))
    return pl.read_delta(uri).select("ID", "CAT", "SUBCAT", "MAINTENANCE", "_line", "_bronze_error")


def test_a_bad_row_lands_with_its_line_and_reason_and_the_rest_of_the_file_is_kept(tmp_path):
    rows = bronze_rows(
        tmp_path,
        b"ID,CAT,SUBCAT,MAINTENANCE\r\nAC_BR,Accessories,Bike Racks,Yes\r\nAC_BS,Accessories,Bike Stands,No,x,y\r\n"
        b'AC_BC,"Accessories,Bottles\r\nAC_CL,Accessories,Cleaners,No\r\nAC_FE,Accessories\r\n',
    ).rows()
    assert rows == [
        ("AC_BR", "Accessories", "Bike Racks", "Yes", 2, None),
        ("AC_BS", "Accessories", "Bike Stands", "No", 3, "expected 4 fields, found 6; extra: 'x,y'"),
        ("AC_BC", "Accessories,Bottles", None, None, 4, "unterminated quoted field (field 2)"),
        ("AC_CL", "Accessories", "Cleaners", "No", 5, None),
        ("AC_FE", "Accessories", None, None, 6, "expected 4 fields, found 2"),
    ]


def test_line_is_the_physical_line_a_row_starts_on_also_after_multi_line_fields(tmp_path):
    rows = bronze_rows(
        tmp_path,
        b'ID,CAT,SUBCAT,MAINTENANCE\r\nAC_BR,"two\r\nlines",Racks,Yes\r\nAC_BS,"three\nshort\nlines",Stands,No\r\nAC_BC,Accessories,Bottles,No\r\n',
    )
    assert rows["_line"].to_list() == [2, 4, 7]
    assert rows["CAT"].to_list() == ["two\r\nlines", "three\nshort\nlines", "Accessories"]
    assert rows["_bronze_error"].null_count() == 3


def test_a_nul_or_control_character_in_a_field_is_a_row_problem(tmp_path):
    rows = bronze_rows(tmp_path, b"ID,CAT,SUBCAT,MAINTENANCE\r\nAC_BR,Acc\x00,Bike Racks,Yes\r\nAC_BS,Accessories,Bike\x1b[31m,No\r\nAC_BC,A,B,C\r\n")
    assert rows.select("_line", "_bronze_error").rows() == [
        (2, "field CAT contains a NUL or control character"),
        (3, "field SUBCAT contains a NUL or control character"),
        (4, None),
    ]


def test_blank_lines_are_rows_marked_blank(tmp_path):
    rows = bronze_rows(tmp_path, b"ID,CAT,SUBCAT,MAINTENANCE\r\n\r\nAC_BR,Accessories,Bike Racks,Yes\r\n   \r\n")
    assert rows.select("_line", "_bronze_error").rows() == [(2, "blank line"), (3, None), (4, "expected 4 fields, found 1")]


def test_well_formed_files_take_the_polars_path(tmp_path, monkeypatch):
    def robust_path(*_):
        raise AssertionError("the robust path is for files polars cannot read faithfully")

    monkeypatch.setattr(csv_source, "read_rows_robust", robust_path)
    rows = bronze_rows(tmp_path, b'\xef\xbb\xbfID,CAT,SUBCAT,MAINTENANCE\r\nAC_BR,"Racks, Bike",,""\r\nAC_BS,"two\r\nlines",x,y')
    assert rows.rows() == [("AC_BR", "Racks, Bike", None, "", 2, None), ("AC_BS", "two\r\nlines", "x", "y", 3, None)]


def test_a_file_of_many_chunks_lands_in_one_commit(tmp_path, monkeypatch):
    path = write(tmp_path, b"ID,CAT,SUBCAT,MAINTENANCE\n" + b"".join(b"K%d,c,s,m\n" % n for n in range(5000)))
    monkeypatch.setattr(csv_source, "READ_CHUNK_BYTES", 4096)
    assert len(chunks(path, CATEGORIES.table, 4096)) > 10
    uri = str(tmp_path / "lake" / "bronze" / CATEGORIES.table)
    source = CATEGORIES
    assert ingest_csv(path, source, uri, fingerprint_csv(path, source)) == 5000
    assert lake.table_version(uri) == 0
    frame = pl.read_delta(uri).sort("_line")  # delta-rs may interleave the batches: `_line` keeps the order
    assert frame["_line"].to_list() == list(range(2, 5002))
    assert frame["ID"].to_list() == [f"K{n}" for n in range(5000)]
    assert frame["_ingested_at"].n_unique() == 1 and frame["_batch_id"].n_unique() == 1


def test_an_error_while_reading_leaves_the_table_as_it_was_and_is_raised_as_is(tmp_path, monkeypatch):
    path = write(tmp_path, b"ID,CAT,SUBCAT,MAINTENANCE\n" + b"".join(b"K%d,c,s,m\n" % n for n in range(500)))
    uri = str(tmp_path / "lake" / "bronze" / CATEGORIES.table)
    source = CATEGORIES
    assert ingest_csv(path, source, uri, fingerprint_csv(path, source)) == 500
    path.write_bytes(path.read_bytes() + b"K500,c,s,m\n")
    fingerprint = fingerprint_csv(path, source)
    monkeypatch.setattr(csv_source, "READ_CHUNK_BYTES", 1024)
    chunks = csv_source.record_chunks

    def failing(*args):
        for number, chunk in enumerate(chunks(*args)):
            if number == 3:
                raise OSError("disk went away")
            yield chunk

    monkeypatch.setattr(csv_source, "record_chunks", failing)
    with pytest.raises(OSError, match="disk went away"):
        ingest_csv(path, source, uri, fingerprint)
    assert lake.table_version(uri) == 0 and pl.read_delta(uri).height == 500
