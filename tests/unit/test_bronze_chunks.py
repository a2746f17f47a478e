"""Bronze reads a file in record-aligned chunks: with chunks of a few bytes, the rows, ``_line``
and ``_bronze_error`` are exactly those of reading the file in one piece, for the fixed nasty
files, the shipped datasets and the generated CSV corpora of ``test_bad_input``."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from logistics_pipeline.tasks.core import csv_source
from logistics_pipeline.tasks.core.contract import BRONZE_ERROR, SOURCES_BY_TABLE
from logistics_pipeline.tasks.core.csv_source import (
    MAX_RECORD_LINES,
    SourceFileError,
    fingerprint_csv,
    read_csv_as_text,
    record_chunks,
)
from tests.unit.test_bad_input import (
    CATEGORIES,
    LANDS,
    NASTY,
    PROPERTY,
    SALES,
    SHIPPED,
    csv_files,
)

CHUNK_SIZES = (1, 40, 300)
"""Bytes per chunk to force: one line per chunk (plus what a record needs), a few lines, more."""


@contextmanager
def chunk_size(chunk_bytes: int) -> Iterator[None]:
    old = csv_source.READ_CHUNK_BYTES
    csv_source.READ_CHUNK_BYTES = chunk_bytes
    try:
        yield
    finally:
        csv_source.READ_CHUNK_BYTES = old


def read(path: Path, table: str, chunk_bytes: int) -> pl.DataFrame:
    source = SOURCES_BY_TABLE[table]
    fingerprint = fingerprint_csv(path, source)
    with chunk_size(chunk_bytes):
        return read_csv_as_text(path, fingerprint, source.relative_path).drop("_ingested_at")


def chunks(path: Path, table: str, chunk_bytes: int) -> list[tuple[bytes, int]]:
    with chunk_size(chunk_bytes):
        return list(record_chunks(path, len(fingerprint_csv(path, SOURCES_BY_TABLE[table]).header)))


def assert_chunks_read_as_whole(path: Path, table: str) -> None:
    whole = read(path, table, 1 << 30)
    for size in CHUNK_SIZES:
        chunked = read(path, table, size)
        assert chunked.equals(whole), f"{path.name} in chunks of {size} bytes:\n{chunked}\nwhole:\n{whole}"


def assert_same_or_refused(data: bytes, table: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(SOURCES_BY_TABLE[table].relative_path).name
        path.write_bytes(data)
        try:
            fingerprint_csv(path, SOURCES_BY_TABLE[table])
        except SourceFileError:
            return
        assert_chunks_read_as_whole(path, table)


def write(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "PX_CAT_G1V2.csv"
    path.write_bytes(content)
    return path


# --- the corpora --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(LANDS))
def test_nasty_files_read_in_chunks_as_whole(name):
    assert_chunks_read_as_whole(NASTY / name, LANDS[name][0])


@pytest.mark.parametrize("table", sorted(SOURCES_BY_TABLE))
def test_shipped_datasets_read_in_chunks_as_whole(table):
    path = SOURCES_BY_TABLE[table].path(SHIPPED)
    size = path.stat().st_size // 7
    assert len(chunks(path, table, size)) > 3
    assert read(path, table, size).equals(read(path, table, 1 << 30))


@PROPERTY
@given(data=csv_files(CATEGORIES))
def test_any_categories_file_reads_in_chunks_as_whole(data):
    assert_same_or_refused(data, CATEGORIES)


@PROPERTY
@given(data=csv_files(SALES))
def test_any_sales_file_reads_in_chunks_as_whole(data):
    assert_same_or_refused(data, SALES)


@PROPERTY
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_read_in_chunks_as_whole(data):
    assert_same_or_refused(b"ID,CAT,SUBCAT,MAINTENANCE\r\n" + data, CATEGORIES)


LINE_PARTS = st.sampled_from(['"', '""', ",", "a", "b,c", '"x,\ny"', "\r", "\n", "\r\n", " ", "é"])


@PROPERTY
@given(parts=st.lists(LINE_PARTS, max_size=60), terminator=st.sampled_from(["\n", "\r\n"]))
def test_quote_soup_reads_in_chunks_as_whole(parts, terminator):
    """Quotes, commas and line ends in any order: stray, unterminated and multi-line quotes mixed."""
    body = "".join(parts).replace("\n", terminator)
    assert_same_or_refused(f"ID,CAT,SUBCAT,MAINTENANCE{terminator}{body}".encode(), CATEGORIES)


# --- where chunks are cut -----------------------------------------------------------------------

def test_a_quoted_field_spanning_lines_is_not_split(tmp_path):
    path = write(tmp_path, b'ID,CAT,SUBCAT,MAINTENANCE\r\nA,"one\r\ntwo\r\nthree",x,y\r\nB,b,c,d\r\nC,"four\nfive",x,y\n')
    header = b"ID,CAT,SUBCAT,MAINTENANCE\r\n"
    assert chunks(path, CATEGORIES, 1) == [
        (header + b'A,"one\r\ntwo\r\nthree",x,y\r\n', 2), (header + b"B,b,c,d\r\n", 5), (header + b'C,"four\nfive",x,y\n', 6),
    ]
    assert read(path, CATEGORIES, 1).select("ID", "CAT", "_line", BRONZE_ERROR).rows() == [
        ("A", "one\r\ntwo\r\nthree", 2, None), ("B", "b", 5, None), ("C", "four\nfive", 6, None),
    ]


def test_chunks_repeat_the_header_without_the_bom_and_number_lines_on(tmp_path):
    path = write(tmp_path, b"\xef\xbb\xbfID,CAT,SUBCAT,MAINTENANCE\nA,b,c,d\n\nB,b,c,d\nC,b,c")
    assert chunks(path, CATEGORIES, 1) == [
        (b"\xef\xbb\xbfID,CAT,SUBCAT,MAINTENANCE\nA,b,c,d\n", 2),
        (b"ID,CAT,SUBCAT,MAINTENANCE\n\n", 3),
        (b"ID,CAT,SUBCAT,MAINTENANCE\nB,b,c,d\n", 4),
        (b"ID,CAT,SUBCAT,MAINTENANCE\nC,b,c", 5),
    ]
    assert read(path, CATEGORIES, 1).select("ID", "_line", BRONZE_ERROR).rows() == [
        ("A", 2, None), (None, 3, "blank line"), ("B", 4, None), ("C", 5, "expected 4 fields, found 3"),
    ]


def test_a_header_only_file_is_one_chunk(tmp_path):
    for content in (b"ID,CAT,SUBCAT,MAINTENANCE\r\n", b"ID,CAT,SUBCAT,MAINTENANCE"):
        path = write(tmp_path, content)
        assert [line for _, line in chunks(path, CATEGORIES, 1)] == [2]
        assert read(path, CATEGORIES, 1).height == 0


def test_an_unterminated_quote_costs_one_row_and_does_not_hold_the_rest_in_one_chunk(tmp_path):
    """No even quote count follows the unterminated quote, so the cut falls at the first line end."""
    lines = [b'A,"open,c,d'] + [b"B%d,b,c,d" % n for n in range(3 * MAX_RECORD_LINES)]
    path = write(tmp_path, b"ID,CAT,SUBCAT,MAINTENANCE\n" + b"\n".join(lines) + b"\n")
    assert len(chunks(path, CATEGORIES, 1000)) > 10
    rows = read(path, CATEGORIES, 1000)
    assert rows.height == len(lines)
    assert rows.filter(pl.col(BRONZE_ERROR).is_not_null()).select("_line", BRONZE_ERROR).rows() == [(2, "unterminated quoted field (field 2)")]
    assert rows.equals(read(path, CATEGORIES, 1 << 30))  # as read whole (1-byte chunks of 3,000 lines take seconds)


def test_a_cut_inside_a_record_the_robust_reader_joins_moves_to_its_end(tmp_path):
    """A stray quote (line 2) leaves the quote count odd from then on, so the even-count rule
    would cut inside the record on lines 4-5; the cut moves to the end of that record."""
    path = write(tmp_path, b'ID,CAT,SUBCAT,MAINTENANCE\nA,"stray,c,d\nB,b,c,d\nC,"multi\nline",c,d\nD,b,c,d\n')
    rows = read(path, CATEGORIES, 1)
    assert rows.select("ID", "CAT", "_line", BRONZE_ERROR).rows() == [
        ("A", "stray,c,d", 2, "unterminated quoted field (field 2)"),
        ("B", "b", 3, None),
        ("C", "multi\nline", 4, None),
        ("D", "b", 6, None),
    ]
    assert_chunks_read_as_whole(path, CATEGORIES)


def test_a_cut_after_a_record_whose_last_line_could_open_another_stays(tmp_path):
    """Lines 3 and 4 would read as one record, but line 3 ends the record of lines 2-3 (the
    robust reader pairs odd-quoted lines from the start), so the cut after line 3 is safe."""
    path = write(tmp_path, b'ID,CAT,SUBCAT,MAINTENANCE\nA,"m\n",c,d\n",b,c,d\nx",y,z,w\n')
    assert [line for _, line in chunks(path, CATEGORIES, 1)] == [2, 4]
    assert read(path, CATEGORIES, 1).select("ID", "CAT", "_line", BRONZE_ERROR).rows() == [
        ("A", "m\n", 2, None), (",b,c,d\nx", "y", 4, None),
    ]
    assert_chunks_read_as_whole(path, CATEGORIES)


def test_well_formed_chunks_take_the_polars_path(tmp_path, monkeypatch):
    def robust_path(*_):
        raise AssertionError("the robust path is for chunks polars cannot read faithfully")

    monkeypatch.setattr(csv_source, "read_rows_robust", robust_path)
    path = write(tmp_path, b'\xef\xbb\xbfID,CAT,SUBCAT,MAINTENANCE\r\n' + b'AC,"Racks, Bike",,""\r\nAS,"two\r\nlines",x,y\r\n' * 50)
    assert len(chunks(path, CATEGORIES, 100)) > 10
    rows = read(path, CATEGORIES, 100)
    assert rows["_line"].to_list() == [2 + 3 * (n // 2) + n % 2 for n in range(100)]


