"""Bronze: land each CSV export as a Delta table, every column as text plus load metadata.

A file is checked in one streaming pass (content hash, UTF-8, header) before anything is
written, and the table is replaced in a single Delta commit, so a bad file never leaves a
partial table. The content hash is the batch id: the same bytes are never ingested twice.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
from prefect import task

from tasks import lake
from tasks.caching import input_cache_key
from tasks.errors import PipelineError
from tasks.sources import SourceFile

CHUNK_BYTES = 1 << 20
NUL = b"\x00"
METADATA_COLUMNS = ("_line", "_ingested_at", "_source", "_batch_id")


class SourceFileError(PipelineError, ValueError):
    """A source file that cannot be ingested; the message names the file and the problem."""

    def __init__(self, path: Path | str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


@dataclass(frozen=True)
class CsvFingerprint:
    """What one pass over a CSV file tells before it is parsed."""

    sha256: str
    header: tuple[str, ...]
    size_bytes: int

    @property
    def batch_id(self) -> str:
        return self.sha256[:16]


def fingerprint_csv(path: Path, source: SourceFile) -> CsvFingerprint:
    """Hash the file, prove it is UTF-8 text, and check its header against the contract."""
    if not path.is_file():
        raise SourceFileError(path, "file not found")
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    first_line = ""
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            nul = chunk.find(NUL)
            if nul >= 0:
                raise SourceFileError(path, f"not a text file (NUL byte at offset {size + nul})")
            try:
                text = decoder.decode(chunk)
            except UnicodeDecodeError as error:
                raise SourceFileError(
                    path,
                    f"not valid UTF-8 (byte 0x{error.object[error.start]:02x} at offset {size + error.start}); "
                    "re-export the file as UTF-8",
                ) from None
            if "\n" not in first_line:
                first_line += text[: 64 * 1024]
            digest.update(chunk)
            size += len(chunk)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise SourceFileError(path, "not valid UTF-8 (truncated multi-byte character at end of file)") from None
    if size == 0 or not first_line.strip("\ufeff\r\n\t "):
        raise SourceFileError(path, "file is empty (expected a header line)")
    header = _parse_header(first_line.lstrip("\ufeff").splitlines()[0])
    _check_header(path, header, source)
    return CsvFingerprint(sha256=digest.hexdigest(), header=header, size_bytes=size)


def _parse_header(line: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in next(csv.reader([line])))


def _check_header(path: Path, header: tuple[str, ...], source: SourceFile) -> None:
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise SourceFileError(path, f"duplicate column names in header: {', '.join(duplicates)}")
    missing = [name for name in source.columns if name not in header]
    if missing:
        raise SourceFileError(
            path,
            f"header does not match the expected columns: missing {', '.join(missing)} "
            f"(found {', '.join(header) or 'nothing'}; expected {', '.join(source.columns)})",
        )


def read_csv_as_text(path: Path, fingerprint: CsvFingerprint, source_name: str) -> pl.DataFrame:
    """Every column as text, plus the line each row starts on and the load metadata."""
    try:
        frame = pl.read_csv(
            path,
            infer_schema=False,
            encoding="utf8",
            row_index_name="_line",
            row_index_offset=2,
        )
    except (pl.exceptions.PolarsError, OSError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SourceFileError(path, f"cannot be parsed as CSV: {reason}") from None
    frame = frame.rename({name: name.strip() for name in frame.columns if name != name.strip()})
    return frame.with_columns(
        pl.col("_line").cast(pl.Int64),
        pl.lit(datetime.now(timezone.utc)).cast(pl.Datetime("us", "UTC")).alias("_ingested_at"),
        pl.lit(source_name).alias("_source"),
        pl.lit(fingerprint.batch_id).alias("_batch_id"),
    ).select(*fingerprint.header, *METADATA_COLUMNS)


def ingest_csv(path: Path, source: SourceFile, table_uri: str, fingerprint: CsvFingerprint) -> int:
    """Write the file to its bronze table unless that exact content is already there; returns its rows."""
    if lake.recorded_input(table_uri) == fingerprint.sha256:
        return lake.row_count(table_uri)
    frame = read_csv_as_text(path, fingerprint, source.relative_path)
    lake.overwrite(
        table_uri,
        frame,
        input_fingerprint=fingerprint.sha256,
        metadata={"logistics.source": source.relative_path, "logistics.batch_id": fingerprint.batch_id},
    )
    return frame.height


# --- Prefect tasks ------------------------------------------------------------------------

@task(task_run_name="check-{source.table}")
def check_source(source: SourceFile, source_dir: Path) -> CsvFingerprint:
    """Refuse a missing, empty, non-UTF-8 or wrongly shaped file before anything is written."""
    return fingerprint_csv(source.path(source_dir), source)


@task(task_run_name="ingest-{source.table}", cache_key_fn=input_cache_key, persist_result=True)
def ingest_source(source: SourceFile, source_dir: Path, target_uri: str, fingerprint: str, checked: CsvFingerprint) -> int:
    """Land one checked CSV in its bronze table (cached on the file's content hash)."""
    return ingest_csv(source.path(source_dir), source, target_uri, checked)
