"""Bronze CSV checks and ingestion: text columns, metadata, idempotency, clear refusals."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from tasks import lake
from tasks.bronze import SourceFileError, fingerprint_csv, ingest_csv
from tasks.sources import SOURCES_BY_TABLE

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
