"""Reading a CSV export for bronze: every column as text plus load metadata, on either engine.

A file is checked in one streaming pass (content hash, UTF-8, header) before anything is
written, and the table is replaced in a single Delta commit, so a bad file never leaves a
partial table. The content hash is the batch id: the same bytes are never ingested twice.

Where the line runs between a bad file and a bad row:

- **The file is refused** (``SourceFileError``, one line naming the file and the problem) when
  it is missing, empty, not text (NUL or control bytes in the header line, more than 5% of
  the first MiB, or NULs in bytes that are not UTF-8), not UTF-8 (Latin-1/cp1252 bytes are
  refused, not guessed at: no mojibake; a UTF-16 or UTF-32 byte order mark), has bare CR
  line ends, or when its header lacks a required column, repeats a name, has an empty name
  or a reserved one (``_line``, ``_bronze_error``...). A header alone is fine: zero rows.
- **A row is kept and marked** when the file is otherwise sound: a line with more or fewer
  fields than the header, an unterminated or stray quote, a blank line, a field holding a
  NUL or another control character, or a field longer than ``MAX_FIELD_CHARS``. The row
  lands with its physical line number in ``_line`` and the reason in ``_bronze_error``
  (null for good rows); silver quarantines it under the rule ``malformed_row``.

Memory does not grow with the file: after the check, the file is read in record-aligned
chunks of about ``READ_CHUNK_BYTES`` (``record_chunks``), each parsed on its own and streamed
as Arrow batches into ``write_deltalake``, which writes them (in files of at most about
``lake.TARGET_FILE_BYTES``) in the one commit. A chunk ends at a line feed that no record
spans: the first one past the size at which the chunk's quotes are balanced, moved to the end
of a record when the robust reader below would join lines across it (``_Body.cut``). Later
chunks repeat the header line, and ``_line`` runs on across chunks, so the rows, ``_line`` and
``_bronze_error`` are those of reading the whole file at once (``tests/unit/test_bronze_chunks``).
delta-rs may store the rows of several chunks out of file order: ``_line`` gives the order.

Each chunk is read on one of two paths. The fast one is polars' CSV reader; its result is
used when the chunk's byte counts prove that polars read every line as a record with exactly
the header's fields (the commas add up: header + (fields - 1) per row + commas inside quoted
values; so do the line feeds; the quotes pair up and every CR ends a line; rows with a quote
inside a value are checked with ``parse_record``, as polars takes ``a"b"c`` for text).
Otherwise the robust path reads the chunk line by line (well-formed lines in bulk with polars,
the others with ``parse_record``), so that one bad line costs one row, not the file. Both give
the same rows for a chunk both can read, and ``_line`` is the physical line a row starts on
(1 = the header) also after quoted fields that span lines.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

import numpy as np
import polars as pl
import pyarrow as pa

from logistics_pipeline.tasks.core.contract import BRONZE_ERROR as ERROR_COLUMN
from logistics_pipeline.tasks.core.contract import SourceFile
from logistics_pipeline.tasks.errors import PipelineError

CHUNK_BYTES = 1 << 20
"""Block size of the checking pass."""
READ_CHUNK_BYTES = 8 << 20
"""Bronze parses and writes a file in record-aligned chunks of about this size: memory stays bounded."""
_READ_AHEAD = 64 << 10
"""Bytes read past what the search for a cut needs (the start of the next chunk)."""
NUL = b"\x00"
METADATA_COLUMNS = ("_line", "_ingested_at", "_source", "_batch_id")
RESERVED_COLUMNS = frozenset((*METADATA_COLUMNS, ERROR_COLUMN, "_rule"))
MAX_FIELD_CHARS = 1 << 20
"""A longer field lands, but its row is marked (and quarantined by silver)."""
MAX_RECORD_LINES = 1_000
"""A quoted field may span lines; one spanning more is taken for an unterminated quote."""
BINARY_SHARE, BINARY_MIN = 0.05, 16
"""A first chunk with more NUL/control bytes than this share (and this many) is binary, not text."""
_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"),
)
_CONTROL_TEXT = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
_CONTROL_BYTES = re.compile(_CONTROL_TEXT.encode())
_QUOTED = re.compile(r'"([^"]*(?:""[^"]*)*)"')


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
    # What the pass counted, so that the fast path can prove polars read every line right.
    header_commas: int = 0
    commas: int = 0
    newlines: int = 0
    has_quotes: bool = False
    has_control: bool = False
    ends_with_newline: bool = True

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
    size = commas = newlines = 0
    has_quotes = has_control = False
    last = b""
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            counts = _byte_counts(chunk)
            if size == 0:
                _refuse_binary(path, chunk, counts[2])
            try:
                text = decoder.decode(chunk)
            except UnicodeDecodeError as error:
                if size == 0 and NUL in chunk:  # binary: invalid UTF-8 and NUL bytes from the start
                    raise SourceFileError(path, f"not a text file (NUL byte at offset {chunk.find(NUL)})") from None
                raise SourceFileError(
                    path,
                    f"not valid UTF-8 (byte 0x{error.object[error.start]:02x} at offset {size + error.start}); "
                    "re-export the file as UTF-8",
                ) from None
            if "\n" not in first_line:
                first_line += text[: 64 * 1024]
            digest.update(chunk)
            commas += counts[0]
            newlines += counts[1]
            has_control = has_control or counts[2]
            has_quotes = has_quotes or b'"' in chunk
            size += len(chunk)
            last = chunk[-1:]
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise SourceFileError(path, "not valid UTF-8 (truncated multi-byte character at end of file)") from None
    header_line = first_line.removeprefix("\ufeff").split("\n", 1)[0].removesuffix("\r")
    if size == 0 or not first_line.strip("\ufeff\r\n\t "):
        raise SourceFileError(path, "file is empty (expected a header line)")
    header = _read_header(path, header_line)
    _check_header(path, header, source)
    return CsvFingerprint(
        sha256=digest.hexdigest(), header=header, size_bytes=size, header_commas=header_line.count(","),
        commas=commas, newlines=newlines, has_quotes=has_quotes, has_control=has_control, ends_with_newline=last == b"\n",
    )


def _refuse_binary(path: Path, chunk: bytes, has_control: bool) -> None:
    """Refuse UTF-16/32 and binary files from their first chunk (NULs in a row are a row problem)."""
    for bom, encoding in _BOMS:
        if chunk.startswith(bom):
            raise SourceFileError(path, f"encoded as {encoding} (byte order mark {bom.hex(' ')}), not UTF-8; re-export the file as UTF-8")
    end = chunk.find(b"\n")
    header = chunk[: end if end >= 0 else len(chunk)].removesuffix(b"\r")
    junk = _CONTROL_BYTES.search(header)
    if junk is None and (not has_control or len(_CONTROL_BYTES.findall(chunk)) <= max(BINARY_MIN, BINARY_SHARE * len(chunk))):
        return
    junk = junk or _CONTROL_BYTES.search(chunk)
    byte = chunk[junk.start()]
    what = "NUL byte" if byte == 0 else f"control byte 0x{byte:02x}"
    raise SourceFileError(path, f"not a text file ({what} at offset {junk.start()})")


def _byte_counts(chunk: bytes) -> tuple[int, int, bool]:
    """(commas, line feeds, whether a NUL/control byte other than tab, CR, LF occurs), in a few
    vectorised passes: the bytes below 0x20 are compared with the LF, CR and tab counts."""
    data = np.frombuffer(chunk, np.uint8)
    commas, newlines = int(np.count_nonzero(data == 0x2C)), int(np.count_nonzero(data == 0x0A))
    low = int(np.count_nonzero(data < 0x20)) - newlines
    if low:
        low -= int(np.count_nonzero(data == 0x0D))
    if low:
        low -= int(np.count_nonzero(data == 0x09))
    return commas, newlines, bool(low) or b"\x7f" in chunk


def _parse_header(line: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in next(csv.reader([line]), []))


def _read_header(path: Path, line: str) -> tuple[str, ...]:
    if "\r" in line:
        raise SourceFileError(path, "lines end with a bare CR (old Mac line endings); re-export the file with LF or CRLF")
    try:
        return _parse_header(line)
    except csv.Error as error:
        raise SourceFileError(path, f"header line cannot be parsed as CSV: {error}") from None


def _check_header(path: Path, header: tuple[str, ...], source: SourceFile) -> None:
    unnamed = [str(position) for position, name in enumerate(header, start=1) if not name]
    if unnamed:
        raise SourceFileError(path, f"header has a column without a name (column {', '.join(unnamed)})")
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise SourceFileError(path, f"duplicate column names in header: {', '.join(duplicates)}")
    reserved = sorted(RESERVED_COLUMNS.intersection(header))
    if reserved:
        raise SourceFileError(path, f"header uses a name reserved for load metadata: {', '.join(reserved)}")
    missing = [name for name in source.columns if name not in header]
    if missing:
        raise SourceFileError(
            path,
            f"header does not match the expected columns: missing {', '.join(missing)} "
            f"(found {', '.join(header) or 'nothing'}; expected {', '.join(source.columns)})",
        )


# --- reading -----------------------------------------------------------------------------

def read_csv_as_text(path: Path, fingerprint: CsvFingerprint, source_name: str) -> pl.DataFrame:
    """The whole file as one frame (``read_csv_chunks`` concatenated), for callers that want it whole."""
    return pl.concat(read_csv_chunks(path, fingerprint, source_name))


def read_csv_chunks(path: Path, fingerprint: CsvFingerprint, source_name: str) -> Iterator[pl.DataFrame]:
    """Every column as text, the line each row starts on, what is wrong with it (if anything),
    and the load metadata: one frame per record-aligned chunk, so memory does not grow with the file."""
    metadata = (
        pl.lit(datetime.now(timezone.utc)).cast(pl.Datetime("us", "UTC")).alias("_ingested_at"),
        pl.lit(source_name).alias("_source"),
        pl.lit(fingerprint.batch_id).alias("_batch_id"),
    )
    for data, first_line in record_chunks(path, len(fingerprint.header)):
        commas, newlines, has_control = _byte_counts(data)
        counted = replace(
            fingerprint, size_bytes=len(data), commas=commas, newlines=newlines, has_quotes=b'"' in data,
            has_control=has_control, ends_with_newline=data.endswith(b"\n"),
        )
        rows = _read_fast(data, counted)
        if rows is None:
            rows = read_rows_robust(data, counted)
        if first_line != 2:
            rows = rows.with_columns(pl.col("_line") + (first_line - 2))
        yield rows.with_columns(*metadata).select(*fingerprint.header, *METADATA_COLUMNS, ERROR_COLUMN)


def _read_fast(data: bytes, fingerprint: CsvFingerprint) -> pl.DataFrame | None:
    """polars' reader, when the byte counts prove it read each line as one full record; else None.
    ``data`` is a header line and records; ``fingerprint`` holds the counts of exactly those bytes."""
    header = list(fingerprint.header)
    if fingerprint.has_quotes and _count(data, b'"') % 2:
        return None  # an unterminated quote (polars closes one at the end of the data) or a stray one
    if not _only_crlf(data):
        return None
    try:
        frame = pl.read_csv(data, infer_schema=False, encoding="utf8", row_index_name="_line", row_index_offset=2)
    except (Exception, pl.exceptions.PanicException):  # noqa: BLE001 - any reader error: the robust path decides
        return None
    frame = frame.rename({name: name.strip() for name in frame.columns if name != name.strip()})
    if frame.columns != ["_line", *header]:
        return None
    values_commas = values_newlines = 0
    if fingerprint.has_quotes and frame.height:
        values_commas, values_newlines = frame.select(
            pl.sum_horizontal(pl.col(c).str.count_matches(",", literal=True) for c in header).sum().alias("commas"),
            pl.sum_horizontal(pl.col(c).str.count_matches("\n", literal=True) for c in header).sum().alias("newlines"),
        ).row(0)
    if fingerprint.commas - fingerprint.header_commas - (values_commas or 0) != frame.height * (len(header) - 1):
        return None  # a short row (polars pads it with nulls) or a blank line
    if fingerprint.newlines != frame.height + (values_newlines or 0) + int(fingerprint.ends_with_newline):
        return None
    line = pl.col("_line").cast(pl.Int64)
    if values_newlines:  # a quoted field spanning lines: later rows start further down
        spanned = pl.sum_horizontal(pl.col(c).str.count_matches("\n", literal=True).fill_null(0) for c in header)
        line = line + spanned.cum_sum() - spanned
    frame = frame.with_columns(line.alias("_line"), pl.lit(None, dtype=pl.String).alias(ERROR_COLUMN))
    if fingerprint.has_quotes and not _quotes_in_values_were_escaped(data, frame, header):
        return None  # a quote inside an unquoted field
    return _mark_bad_fields(frame, fingerprint)


def _only_crlf(data: bytes) -> bool:
    """Whether every CR ends a line (CRLF). polars drops or splits at a CR elsewhere (``a\r,b``,
    ``""\r""``) where the robust path keeps it, so a chunk with one takes the robust path."""
    values = np.frombuffer(data, np.uint8)
    crs = np.flatnonzero(values == 0x0D)
    return bool(np.all(values[np.minimum(crs + 1, len(values) - 1)] == 0x0A))


def _quotes_in_values_were_escaped(data: bytes, frame: pl.DataFrame, header: list[str]) -> bool:
    """polars takes quotes inside an unquoted field (``a"b"c``) as text, where the robust path
    marks the row; so the few rows with a quote in a value are parsed again with ``parse_record``,
    and the fast path holds only when none of them has a problem."""
    quoted = frame.filter(pl.any_horizontal(pl.col(c).str.contains('"', literal=True).fill_null(False) for c in header))
    if quoted.height == 0:
        return True
    spanned = pl.sum_horizontal(pl.col(c).str.count_matches("\n", literal=True).fill_null(0) for c in header)
    lines = data.split(b"\n")  # lines[0] is the header: physical line n is lines[n - 1]
    for line, span in quoted.select("_line", spanned.alias("span")).iter_rows():
        record = b"\n".join(lines[line - 1 : line + span]).decode("utf-8").removesuffix("\r")
        if parse_record(record, len(header))[1] is not None:
            return False
    return True


def _mark_bad_fields(frame: pl.DataFrame, fingerprint: CsvFingerprint) -> pl.DataFrame:
    """Fill ``_bronze_error`` of rows read as records that hold a control character or an
    oversized field (both paths; only the columns the byte pass flagged are searched)."""
    header = fingerprint.header
    control = dict.fromkeys(header, fingerprint.has_control)
    long = dict.fromkeys(header, False)
    if fingerprint.size_bytes > MAX_FIELD_CHARS and frame.height:
        longest = frame.select(pl.col(c).str.len_bytes().max() for c in header).row(0)
        long = {c: n is not None and n > MAX_FIELD_CHARS for c, n in zip(header, longest)}
    checks: list[tuple[pl.Expr, pl.Expr]] = []
    for column in header:
        if control[column]:
            checks.append((pl.col(column).str.contains(_CONTROL_TEXT), pl.lit(_control_reason(column))))
        if long[column]:
            length = pl.col(column).str.len_chars()
            checks.append((length > MAX_FIELD_CHARS, pl.concat_str(pl.lit(f"field {column} has "), length.cast(pl.String), pl.lit(_LONG_TAIL))))
    if not checks:
        return frame
    reason: pl.Expr = pl.col(ERROR_COLUMN)
    for found, text in reversed(checks):
        reason = pl.when(pl.col(ERROR_COLUMN).is_null() & found.fill_null(False)).then(text).otherwise(reason)
    return frame.with_columns(reason.alias(ERROR_COLUMN))


_LONG_TAIL = f" characters (more than {MAX_FIELD_CHARS})"


def _control_reason(column: str) -> str:
    return f"field {column} contains a NUL or control character"


def read_rows_robust(data: bytes, fingerprint: CsvFingerprint) -> pl.DataFrame:
    """Parse a header line and records (a file or one chunk of it) line by line: every physical
    line ends up in exactly one row, and a row with a problem is kept with the reason. Columns:
    the header, ``_line``, ``_bronze_error``.

    Lines without quotes and with the right number of commas (nearly all of them) are split
    by polars in bulk; only the others go through ``parse_record``: a quoted field may span
    lines up to the next line with an odd number of quotes, and when that does not give a
    well-formed record, the opening line alone is the bad row (an unterminated quote costs
    one line, not the rest of the file)."""
    lines = data.decode("utf-8").removeprefix("\ufeff").split("\n")
    if lines[-1] == "":
        lines.pop()
    header = fingerprint.header
    width = len(header)
    raw = pl.Series("raw", lines[1:], dtype=pl.String)
    counts = pl.DataFrame({"raw": raw}).select(
        pl.col("raw").str.count_matches('"', literal=True).alias("quotes"),
        pl.col("raw").str.count_matches(",", literal=True).alias("commas"),
    )
    quotes = counts["quotes"].to_numpy()
    simple = (quotes == 0) & (counts["commas"].to_numpy() == width - 1)
    odd = np.flatnonzero(quotes % 2 == 1)
    consumed = np.zeros(len(raw), dtype=bool)
    parsed: dict[str, list] = {"_line": [], ERROR_COLUMN: [], **{name: [] for name in header}}

    def add(index: int, fields: list[str | None], error: str | None) -> None:
        parsed["_line"].append(index + 2)
        parsed[ERROR_COLUMN].append(error)
        fields = fields[:width] + [None] * (width - len(fields))
        for name, value in zip(header, fields):
            parsed[name].append(value)

    for index in np.flatnonzero(~simple).tolist():
        if consumed[index]:
            continue
        line = lines[index + 1].removesuffix("\r")
        if quotes[index] % 2:
            after = np.searchsorted(odd, index, side="right")
            end = int(odd[after]) if after < len(odd) and odd[after] < index + MAX_RECORD_LINES else None
            if end is not None:
                fields, error = parse_record("\n".join(lines[index + 1 : end + 2]).removesuffix("\r"), width)
                if error is None:
                    add(index, fields, None)
                    consumed[index + 1 : end + 1] = True
                    continue
        add(index, *parse_record(line, width))

    keep = simple & ~consumed
    fields = [f"_{position}" for position in range(width)]
    bulk = (
        pl.DataFrame({"raw": raw, "_line": np.arange(2, len(raw) + 2, dtype=np.int64)})
        .filter(pl.Series(keep))
        .select(pl.col("raw").str.strip_suffix("\r").str.split_exact(",", width - 1).struct.rename_fields(fields), "_line")
        .unnest("raw")
        .select(
            *(_null_if_empty(pl.col(field)).alias(name) for field, name in zip(fields, header)),
            pl.col("_line"),
            pl.lit(None, dtype=pl.String).alias(ERROR_COLUMN),
        )
    )
    schema = {**dict.fromkeys(header, pl.String), "_line": pl.Int64, ERROR_COLUMN: pl.String}
    rows = pl.concat([bulk, pl.DataFrame(parsed, schema=schema).select(bulk.columns)]).sort("_line")
    return _mark_bad_fields(rows, fingerprint)


def _null_if_empty(value: pl.Expr) -> pl.Expr:
    return pl.when(value.str.len_bytes() > 0).then(value)


def parse_record(record: str, width: int) -> tuple[list[str | None], str | None]:
    """Split one CSV record (RFC 4180 quoting) into fields: an unquoted empty field is null,
    a quoted one is ``""``. Returns the fields and the first problem found, if any."""
    if '"' not in record:
        if not record and width > 1:
            return [], "blank line"
        fields: list[str | None] = [value or None for value in record.split(",")]
        return fields, _count_problem(fields, width)
    fields = []
    problem: str | None = None
    position, size = 0, len(record)
    while True:
        if record.startswith('"', position):
            match = _QUOTED.match(record, position)
            if match is None:
                fields.append(record[position + 1 :])
                return fields, problem or f"unterminated quoted field (field {len(fields)})"
            value = match.group(1).replace('""', '"')
            position = match.end()
            if position < size and record[position] != ",":
                comma = record.find(",", position)
                value += record[position:] if comma < 0 else record[position:comma]
                problem = problem or f"text after the closing quote of field {len(fields) + 1}"
                position = size if comma < 0 else comma
            fields.append(value)
        else:
            comma = record.find(",", position)
            value = record[position:] if comma < 0 else record[position:comma]
            if '"' in value:
                problem = problem or f"quote inside unquoted field {len(fields) + 1}"
            fields.append(value or None)
            position = size if comma < 0 else comma
        if position >= size:
            return fields, problem or _count_problem(fields, width)
        position += 1  # past the comma
        if position == size:
            fields.append(None)
            return fields, problem or _count_problem(fields, width)


def _count_problem(fields: list[str | None], width: int) -> str | None:
    if len(fields) == width:
        return None
    problem = f"expected {width} fields, found {len(fields)}"
    if len(fields) > width:
        extra = ",".join(value or "" for value in fields[width:])
        problem += f"; extra: {extra[:200]!r}" + (" (cut)" if len(extra) > 200 else "")
    return problem


# --- record-aligned chunks ------------------------------------------------------------------

def record_chunks(path: Path, width: int) -> Iterator[tuple[bytes, int]]:
    """The file as (header line + whole records of about ``READ_CHUNK_BYTES``, the physical line
    the first of those records starts on). The first chunk starts with the file's own bytes (BOM
    included); later ones repeat the header line without it. A header-only file is one chunk."""
    with path.open("rb") as handle:
        body = _Body(handle)
        header = body.take(b"", body.line_end(0))
        repeated = header.removeprefix(codecs.BOM_UTF8)
        line, first = 2, True
        while first or body.data or not body.eof:
            size = body.cut(READ_CHUNK_BYTES, width)
            if not size and not first:
                return
            prefix = header if first else repeated
            chunk = body.take(prefix, size)
            yield chunk, line
            line += _count(chunk, b"\n") - prefix.endswith(b"\n")
            first = False


class _Body:
    """The unread bytes of a file, read in blocks as the search for a cut needs them."""

    def __init__(self, handle: BinaryIO):
        self.handle = handle
        self.data = b""
        self.eof = False

    def take(self, prefix: bytes, size: int) -> bytes:
        """``prefix`` and the next ``size`` bytes, copied once."""
        taken = b"".join((prefix, memoryview(self.data)[:size]))
        self.data = self.data[size:]
        return taken

    def line_end(self, position: int) -> int:
        """Where the line holding ``position`` ends (after its LF; the end of the file for a last
        line without one). Reads just past ``position``, so little is left over for the next
        chunk, and twice as much each time a long line needs more."""
        ahead = _READ_AHEAD
        while (found := self.data.find(b"\n", position)) < 0:
            position = max(position, len(self.data))
            block = self.handle.read(position - len(self.data) + ahead)
            if not block:
                self.eof = True
                return len(self.data)
            self.data += block
            ahead *= 2
        return found + 1

    def cut(self, target: int, width: int) -> int:
        """Bytes of the next chunk: at least ``target`` (or the rest), ending at a line end that
        no record spans. First choice: the first line end past the target at which the chunk
        holds an even number of quotes (a quoted field spanning lines is not split), looked for
        over ``MAX_RECORD_LINES`` lines (more means an unterminated quote); then ``_safe_cut``
        makes sure the robust reader of the whole file would not join lines across it."""
        end = self.line_end(max(target, 1) - 1)
        cut, quotes = end, _count(self.data, b'"', end) if b'"' in self.data else 0
        for _ in range(MAX_RECORD_LINES):
            if quotes % 2 == 0 or self._at_end(cut):
                break
            after = self.line_end(cut)
            quotes += self.data.count(b'"', cut, after)
            cut = after
        else:
            cut = end
        return cut if self._at_end(cut) else self._safe_cut(cut, width)

    def _at_end(self, position: int) -> bool:
        """Whether ``position`` is the end of the file (reading on to tell)."""
        if position >= len(self.data) and not self.eof:
            self.line_end(position)
        return position >= len(self.data)

    def _safe_cut(self, cut: int, width: int) -> int:
        """``cut``, unless the robust reader (``read_rows_robust``) would read a record from the
        line before it across it; then the end of that record.

        That reader joins an odd-quoted line with the next odd-quoted one when they are fewer
        than ``MAX_RECORD_LINES`` apart and the joined text parses cleanly, and the first line is
        not itself the end of such a record. So the one record that could span the cut is from
        the chunk's last odd-quoted line to the next one after the cut."""
        data = self.data
        opening, start = None, cut
        for back in range(MAX_RECORD_LINES - 1):
            if start == 0:
                return cut
            previous = data.rfind(b"\n", 0, start - 1) + 1
            if data.count(b'"', previous, start) % 2:
                opening = previous
                break
            start = previous
        if opening is None:
            return cut
        closing, end = None, cut
        for _ in range(MAX_RECORD_LINES - 1 - back):
            if self._at_end(end):
                return cut
            after = self.line_end(end)
            if self.data.count(b'"', end, after) % 2:
                closing = after
                break
            end = after
        if closing is None or not _joins(self.data, opening, closing, width):
            return cut
        return closing if _opens_record(self.data[:cut], width) else cut


def _count(data: bytes, byte: bytes, end: int | None = None) -> int:
    """How often one byte occurs in data[:end], vectorised (``bytes.count`` goes byte by byte)."""
    return int(np.count_nonzero(np.frombuffer(data, np.uint8, count=len(data) if end is None else end) == byte[0]))


def _joins(data: bytes, start: int, end: int, width: int) -> bool:
    """Whether the lines in data[start:end] read as one well-formed record (as ``read_rows_robust`` joins them)."""
    record = data[start:end].removesuffix(b"\n").decode("utf-8").removesuffix("\r")
    return parse_record(record, width)[1] is None


def _opens_record(data: bytes, width: int) -> bool:
    """Whether the last odd-quoted line of ``data`` (whole lines) starts a record rather than ends
    one, replaying ``read_rows_robust``'s pairing of odd-quoted lines from the start."""
    values = np.frombuffer(data, np.uint8)
    ends = np.flatnonzero(values == 0x0A)
    quotes = np.bincount(np.searchsorted(ends, np.flatnonzero(values == 0x22)), minlength=len(ends) + 1)
    starts = np.concatenate(([0], ends + 1))
    pending = None
    for line in np.flatnonzero(quotes % 2).tolist():
        if pending is not None and line - pending < MAX_RECORD_LINES and _joins(data, int(starts[pending]), int(ends[line]) + 1, width):
            pending = None
        else:
            pending = line
    return pending is not None


def arrow_schema(header: tuple[str, ...]) -> pa.Schema:
    """The bronze table's columns, as ``read_csv_chunks`` gives them: needed before the first chunk is read."""
    text = pa.large_string()
    return pa.schema([
        *((name, text) for name in header),
        ("_line", pa.int64()), ("_ingested_at", pa.timestamp("us", "UTC")), ("_source", text), ("_batch_id", text), (ERROR_COLUMN, text),
    ])
