"""Bad input never crashes bronze or silver: a file is refused in one line naming it, or it
lands with every row in silver or quarantine (and the counts reconcile).

Fixed nasty files (``tests/fixtures/nasty/``) each with their expected outcome, a 10 MB field
made at test time, and hypothesis properties over generated CSV bytes and Kafka values. The
bronze reader and the silver runner run as plain functions on an in-memory store: no Delta
table, no server.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

import orjson
import polars as pl
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from logistics_pipeline.tasks.core.contract import (
    BRONZE_ERROR,
    KAFKA_ORDERS,
    SOURCES_BY_TABLE,
    STREAM_ORDERS,
)
from logistics_pipeline.tasks.core.csv_source import (
    MAX_FIELD_CHARS,
    SourceFileError,
    _read_fast,
    fingerprint_csv,
    read_csv_as_text,
    read_rows_robust,
)
from logistics_pipeline.tasks.core.drift import SchemaDriftError
from logistics_pipeline.tasks.core.quality import RULE_COLUMN, TableCounts
from logistics_pipeline.tasks.core.runner import recorded_counts, run_silver_table, run_stream_orders
from logistics_pipeline.tasks.core.silver import SILVER_BY_NAME
from logistics_pipeline.tasks.core.stream import decode_text
from logistics_pipeline.tasks.local.stream import OFFSET_KEY, _frame, landing_app_id
from tests.memory_store import MemoryStore

NASTY = Path(__file__).resolve().parents[1] / "fixtures" / "nasty"
SHIPPED = Path(__file__).resolve().parents[2] / "datasets"
CATEGORIES = "erp_px_cat_g1v2"
SALES = "crm_sales_details"
PROPERTY = settings(  # max_examples comes from the profile tests/conftest.py loads
    deadline=None,
    derandomize=True,  # the same examples on every run and machine: CI is reproducible
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
STREAM_PROPERTY = settings(PROPERTY, max_examples=max(3, PROPERTY.max_examples // 5))  # up to 10 messages each


def land(path: Path, table: str, store: MemoryStore | None = None) -> tuple[TableCounts, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Bronze then silver for one file, in memory: (counts, bronze, silver, quarantine); raises the refusal.
    (Writing the same rows to Delta is tested in tests/integration/test_bronze_tables.py.)"""
    source = SOURCES_BY_TABLE[table]
    store = store if store is not None else MemoryStore()
    store.put("bronze", table, read_csv_as_text(path, fingerprint_csv(path, source), source.relative_path))
    counts = run_silver_table(store, SILVER_BY_NAME[table])
    return counts, *(store.frame(layer, table) for layer in ("bronze", "silver", "quarantine"))


def assert_reconciles(counts: TableCounts, bronze: pl.DataFrame, silver: pl.DataFrame, quarantine: pl.DataFrame) -> None:
    assert counts.rows_in == bronze.height
    assert counts.rows_out == silver.height
    assert counts.quarantined == quarantine.height
    assert counts.merged_duplicates >= 0
    assert bronze.height == silver.height + quarantine.height + counts.merged_duplicates
    bad = bronze.filter(pl.col(BRONZE_ERROR).is_not_null())
    malformed = quarantine.filter(pl.col(RULE_COLUMN) == "malformed_row")
    assert sorted(malformed["_line"].to_list()) == sorted(bad["_line"].to_list()), "every malformed row is quarantined first"
    assert malformed[BRONZE_ERROR].null_count() == 0


def assert_one_line_refusal(error: Exception, path: Path) -> None:
    message = str(error)
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message and "\r" not in message


# --- fixed nasty files ----------------------------------------------------------------------

LANDS = {
    # file: (table, silver rows, {line: (rule, reason or None)})
    "truncated_last_line.csv": (CATEGORIES, 3, {5: ("malformed_row", "expected 4 fields, found 3")}),
    "extra_and_missing_fields.csv": (
        CATEGORIES, 3, {3: ("malformed_row", "expected 4 fields, found 6; extra: 'oops,more'"), 5: ("malformed_row", "expected 4 fields, found 2")},
    ),
    "quotes_inside_fields.csv": (CATEGORIES, 4, {}),
    "unterminated_quote.csv": (CATEGORIES, 3, {3: ("malformed_row", "unterminated quoted field (field 2)")}),
    "bom.csv": (CATEGORIES, 2, {}),
    "header_only.csv": (CATEGORIES, 0, {}),
    "nul_in_field.csv": (CATEGORIES, 30, {32: ("malformed_row", "field CAT contains a NUL or control character")}),
    "blank_lines.csv": (CATEGORIES, 2, {3: ("malformed_row", "blank line"), 5: ("malformed_row", "blank line")}),
    "sales_mixed.csv": (
        SALES, 2, {
            3: ("malformed_row", "expected 9 fields, found 11; extra: ','"),
            5: ("missing_order_number", None),
            6: ("malformed_row", "expected 9 fields, found 4"),
        },
    ),
}

REFUSED = {
    "latin1.csv": "not valid UTF-8 (byte 0xe9 at offset 52); re-export the file as UTF-8",
    "utf16_bom.csv": "encoded as UTF-16 (byte order mark ff fe), not UTF-8; re-export the file as UTF-8",
    "empty.csv": "file is empty (expected a header line)",
    "duplicate_header.csv": "duplicate column names in header: CAT",
    "missing_column.csv": "header does not match the expected columns: missing MAINTENANCE",
    "binary_junk.csv": "not a text file (control byte 0x1f at offset 0)",
}


def test_every_nasty_file_has_an_expected_outcome():
    assert {path.name for path in NASTY.glob("*.csv")} == set(LANDS) | set(REFUSED)


@pytest.mark.parametrize("name", sorted(LANDS))
def test_nasty_file_lands_with_bad_rows_quarantined_by_line(tmp_path, name):
    table, silver_rows, rejects = LANDS[name]
    counts, bronze, silver, quarantine = land(NASTY / name, table)
    assert_reconciles(counts, bronze, silver, quarantine)
    assert silver.height == silver_rows
    assert {line: (rule, reason) for line, rule, reason in quarantine.select("_line", RULE_COLUMN, BRONZE_ERROR).rows()} == rejects


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_nasty_file_is_refused_in_one_line_naming_it(tmp_path, name):
    source = SOURCES_BY_TABLE[CATEGORIES]
    with pytest.raises(SourceFileError) as error:
        fingerprint_csv(NASTY / name, source)
    assert_one_line_refusal(error.value, NASTY / name)
    assert str(error.value).startswith(f"{NASTY / name}: {REFUSED[name]}")


def test_quotes_inside_fields_land_as_text_on_their_physical_lines(tmp_path):
    _, bronze, silver, _ = land(NASTY / "quotes_inside_fields.csv", CATEGORIES)
    assert bronze.select("ID", "CAT", "SUBCAT", "MAINTENANCE", "_line").rows() == [
        ("AC_BR", 'Say "hi"', "Racks, Bike", "Yes", 2),
        ("AC_BS", "Stands", 'Bike "Pro" Stands', "No", 3),
        ("AC_NT", "two\r\nline note", "Notes", None, 4),
        ("AC_FE", "Accessories", "Fenders", "", 6),  # the row after a two-line field starts on line 6
    ]


def test_bom_is_dropped_and_unicode_kept(tmp_path):
    _, bronze, _, _ = land(NASTY / "bom.csv", CATEGORIES)
    assert bronze.columns[0] == "ID"
    assert bronze["SUBCAT"].to_list() == ["Bike Racks", "Fahrradständer"]


def test_a_10_mb_field_lands_and_its_row_is_quarantined_with_the_reason(tmp_path):
    path = tmp_path / "PX_CAT_G1V2.csv"
    huge = "x" * (10 * 1024 * 1024)
    path.write_text(f"ID,CAT,SUBCAT,MAINTENANCE\r\nAC_BR,Accessories,Bike Racks,Yes\r\nAC_HG,{huge},Huge,No\r\n", encoding="utf-8")
    counts, bronze, silver, quarantine = land(path, CATEGORIES)
    assert_reconciles(counts, bronze, silver, quarantine)
    assert silver["id"].to_list() == ["AC_BR"]
    assert quarantine.select("_line", RULE_COLUMN, BRONZE_ERROR).rows() == [
        (3, "malformed_row", f"field CAT has {len(huge)} characters (more than {MAX_FIELD_CHARS})"),
    ]
    assert quarantine["CAT"].str.len_chars().to_list() == [len(huge)], "the row is kept as received"


def test_a_malformed_row_is_quarantined_before_any_other_rule(tmp_path):
    _, _, _, quarantine = land(NASTY / "sales_mixed.csv", SALES)
    line3 = quarantine.filter(pl.col("_line") == 3)
    assert line3["sls_ord_num"].to_list() == [None], "it would also break missing_order_number"
    assert line3[RULE_COLUMN].to_list() == ["malformed_row"]


# --- fast path and robust path agree ----------------------------------------------------------

def test_the_robust_path_reads_the_shipped_datasets_exactly_as_polars_does():
    for source in SOURCES_BY_TABLE.values():
        path = source.path(SHIPPED)
        fingerprint = fingerprint_csv(path, source)
        fast = _read_fast(path.read_bytes(), fingerprint)
        assert fast is not None, f"{path} should take the fast path"
        robust = read_rows_robust(path.read_bytes(), fingerprint)
        assert fast.select(robust.columns).equals(robust), path


@pytest.mark.parametrize(
    ("row", "cat", "reason"),
    [
        (b'AC,a"b"c,x,y', 'a"b"c', "quote inside unquoted field 2"),
        (b'AC,"x"\r"",x,y', 'x\r""', "text after the closing quote of field 2"),
        (b"AC,a\r,x,y", "a\r", None),  # polars drops the CR
        (b'AC,x,y,"""', "x", "text after the closing quote of field 4"),  # polars closes the quote at the end
    ],
)
def test_what_polars_reads_leniently_takes_the_robust_path(row, cat, reason):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "PX_CAT_G1V2.csv"
        path.write_bytes(b"ID,CAT,SUBCAT,MAINTENANCE\r\nAC_BR,Accessories,Bike Racks,Yes\r\n" + row)
        fingerprint = fingerprint_csv(path, SOURCES_BY_TABLE[CATEGORIES])
        assert _read_fast(path.read_bytes(), fingerprint) is None
        robust = read_rows_robust(path.read_bytes(), fingerprint)
    assert robust.select("CAT", BRONZE_ERROR).rows() == [("Accessories", None), (cat, reason)]


CELL = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["", " ", '"', '""', ",", ", ", "\r\n", "\n", "a\rb", "0", "20101229", "-1", "1.5", "é", "日本", "🚲", "\u202eRTL", "e\u0301"]),
)


@PROPERTY
@given(rows=st.lists(st.lists(CELL, min_size=4, max_size=4), max_size=8), terminator=st.sampled_from(["\r\n", "\n"]), final=st.booleans())
def test_whenever_polars_reads_a_file_the_robust_path_reads_it_the_same(rows, terminator, final):
    """Well-formed CSV (quoted as csv.writer quotes): the fast path, when it applies, equals the robust one."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=terminator)
    writer.writerow(SOURCES_BY_TABLE[CATEGORIES].columns)
    writer.writerows(rows)
    text = buffer.getvalue() if final or not rows else buffer.getvalue().removesuffix(terminator)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "PX_CAT_G1V2.csv"
        path.write_bytes(text.encode("utf-8"))
        try:
            fingerprint = fingerprint_csv(path, SOURCES_BY_TABLE[CATEGORIES])
        except SourceFileError as error:  # many control characters in a tiny file: binary
            assert "not a text file" in str(error)
            return
        robust = read_rows_robust(path.read_bytes(), fingerprint)
        fast = _read_fast(path.read_bytes(), fingerprint)
        if fast is not None:
            assert fast.select(robust.columns).equals(robust)
        expected_lines, line = [], 2
        for row in rows:
            expected_lines.append(line)
            line += sum(cell.count("\n") for cell in row) + 1
        assert robust["_line"].to_list() == expected_lines


# --- hypothesis: CSV bytes --------------------------------------------------------------------

def _quoted(cell: str) -> str:
    return '"' + cell.replace('"', '""') + '"'


@st.composite
def csv_files(draw, table: str) -> bytes:
    """A header (rarely damaged) and a mix of good rows and junk, as bytes."""
    columns = list(SOURCES_BY_TABLE[table].columns)
    header_damage = draw(st.sampled_from(["none"] * 12 + ["drop", "rename", "duplicate", "extra", "bom"]))
    if header_damage == "drop":
        columns.pop(draw(st.integers(0, len(columns) - 1)))
    elif header_damage == "rename":
        columns[0] = columns[0] + "_x"
    elif header_damage == "duplicate":
        columns.append(columns[0])
    elif header_damage == "extra":
        columns.append("note")
    terminator = draw(st.sampled_from([b"\r\n", b"\n"]))
    lines = [(b"\xef\xbb\xbf" if header_damage == "bom" else b"") + ",".join(columns).encode()]
    good_cell = st.one_of(CELL, st.from_regex(r"[0-9]{1,8}", fullmatch=True), st.sampled_from(["SO43697", "BK-R93R-62", "21768", "Yes"]))
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["good"] * 6 + ["ragged", "junk", "latin1", "nul", "quote", "blank"]))
        width = len(columns) if kind != "ragged" else draw(st.integers(0, len(columns) + 3))
        cells = draw(st.lists(good_cell, min_size=width, max_size=width))
        text = ",".join(_quoted(cell) if draw(st.booleans()) else cell for cell in cells)
        if kind == "junk":
            line = draw(st.binary(max_size=24))
        elif kind == "latin1":
            line = text.encode("utf-8", "replace") + "é".encode("latin-1")
        elif kind == "nul":
            line = text.encode() + b"\x00\x01"
        elif kind == "quote":
            line = text.encode() + b',"unterminated'
        elif kind == "blank":
            line = b""
        else:
            line = text.encode("utf-8", "surrogatepass")
        lines.append(line)
    body = terminator.join(lines)
    return body + (terminator if draw(st.booleans()) else b"")


def check_csv_lands_or_is_refused(data: bytes, table: str) -> None:
    source = SOURCES_BY_TABLE[table]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(source.relative_path).name
        path.write_bytes(data)
        store = MemoryStore()
        try:
            counts, *frames = land(path, table, store)
        except SourceFileError as error:
            assert_one_line_refusal(error, path)
            assert ("bronze", table) not in store.tables, "a refused file leaves no table"
            event(f"refused: {error.problem.split(' (')[0].split(':')[0]}")
            return
        except SchemaDriftError as error:
            assert str(error).startswith(f"silver {table}: schema drift: column ") and "\n" not in str(error)
            assert ("silver", table) not in store.tables, "silver writes nothing for a drifted table"
            event("refused by silver: schema drift")
            return
        assert_reconciles(counts, *frames)
        event("landed, with malformed rows" if frames[0][BRONZE_ERROR].null_count() < frames[0].height else "landed")
        assert recorded_counts(store, table) == counts


@PROPERTY
@given(data=csv_files(CATEGORIES))
def test_any_categories_file_lands_or_is_refused(data):
    check_csv_lands_or_is_refused(data, CATEGORIES)


@PROPERTY
@given(data=csv_files(SALES))
def test_any_sales_file_lands_or_is_refused(data):
    check_csv_lands_or_is_refused(data, SALES)


@PROPERTY
@given(data=st.binary(max_size=300), header=st.booleans())
def test_arbitrary_bytes_land_or_are_refused(data, header):
    prefix = ",".join(SOURCES_BY_TABLE[CATEGORIES].columns).encode() + b"\r\n" if header else b""
    check_csv_lands_or_is_refused(prefix + data, CATEGORIES)


# --- Kafka values ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reference_lake() -> tuple[None, list[str], list[int]]:
    """Silver products and customers of the shipped datasets: (None, current product numbers,
    customer ids), for messages that look real."""
    store = MemoryStore()
    for table in ("crm_prd_info", "crm_cust_info"):
        land(SOURCES_BY_TABLE[table].path(SHIPPED), table, store)
    products = store.frame("silver", "crm_prd_info").filter(pl.col("prd_end_dt").is_null())["prd_key"].to_list()
    customers = store.frame("silver", "crm_cust_info")["cst_id"].to_list()
    return None, products[:5], customers[:5]


def valid_order(products: list[str], customers: list[int], number: int = 1) -> dict:
    return {
        "event_id": f"e-{number}", "event_time": "2026-11-26T13:00:00.123456+00:00", "order_number": f"ST{number:016d}",
        "customer_id": customers[0], "order_date": "2026-11-26", "ship_date": "2026-12-03", "due_date": "2026-12-08",
        "lines": [{"product_number": products[0], "quantity": 1, "price": 10.0, "sales_amount": 10.0}],
    }


def run_stream(values: list[str | None], reference_lake) -> tuple[TableCounts, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """``values`` as one landing-file batch of bronze kafka_orders, then silver stream_orders, in memory."""
    store, n = MemoryStore(), len(values)
    rows = _frame(values, [None] * n, [0] * n, list(range(n)), [None] * n, ["landing/orders/test.jsonl"] * n, [landing_app_id("test.jsonl")] * n, "test-0")
    store.put("bronze", KAFKA_ORDERS, rows.drop(OFFSET_KEY))
    counts = run_stream_orders(store)
    return counts, *(store.frame(layer, table) for layer, table in (("bronze", KAFKA_ORDERS), ("silver", STREAM_ORDERS), ("quarantine", STREAM_ORDERS)))


def assert_stream_reconciles(counts: TableCounts, bronze: pl.DataFrame, silver: pl.DataFrame, quarantine: pl.DataFrame) -> None:
    assert counts.rows_out == silver.height and counts.quarantined == quarantine.height
    assert counts.merged_duplicates >= 0
    assert counts.rows_in == silver.height + quarantine.height + counts.merged_duplicates
    assert quarantine.select(RULE_COLUMN, "partition", "offset").null_count().row(0) == (0, 0, 0)
    # every message is in silver (by its order number) or in quarantine (by its offset)
    quarantined = set(quarantine["offset"].to_list())
    for offset, value in bronze.select("offset", "value").rows():
        if offset not in quarantined:
            assert _lands(value, silver), f"message at offset {offset} is neither in silver nor in quarantine"


NASTY_VALUES = {
    "tombstone": (None, "not_json"),
    "empty": ("", "not_json"),
    "not json": ("hello", "not_json"),
    "cut in half": ('{"event_id": "e-1", "lines": [{"product_', "not_json"),
    "NaN literal": ('{"customer_id": NaN, "lines": [{}]}', "not_json"),
    "Infinity literal": ('{"customer_id": Infinity, "lines": [{}]}', "not_json"),
    "deeply nested": ("[" * 5000 + "]" * 5000, "not_json"),
    "invalid utf-8 replaced": (decode_text(b'{"a": "\xff\xfe"'), "not_json"),
    "a list": ("[1, 2, 3]", "wrong_shape"),
    "a number": ("42", "wrong_shape"),
    "a string": ('"order"', "wrong_shape"),
    "null json": ("null", "wrong_shape"),
    "lines not a list": ('{"lines": {"product_number": "x"}}', "wrong_shape"),
    "lines empty": ('{"lines": []}', "wrong_shape"),
    "a line not an object": ('{"lines": [1]}', "wrong_shape"),
}


@pytest.mark.parametrize("name", sorted(NASTY_VALUES))
def test_nasty_kafka_value_is_quarantined_with_its_rule_and_offset(reference_lake, name):
    value, rule = NASTY_VALUES[name]
    counts, bronze, silver, quarantine = run_stream([value], reference_lake)
    assert_stream_reconciles(counts, bronze, silver, quarantine)
    assert quarantine.select(RULE_COLUMN, "offset").rows() == [(rule, 0)]


def mutated(order: dict, path: tuple, value) -> dict:
    copy = json.loads(json.dumps(order))
    target = copy
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return copy


_DELETE = object()
WRONG_TYPES = {
    "customer_id text": (("customer_id",), "abc", "mistyped_field"),
    "customer_id 1e30": (("customer_id",), 1e30, "mistyped_field"),
    "customer_id beyond int64": (("customer_id",), 99999999999999999999, "mistyped_field"),
    "customer_id true": (("customer_id",), True, "mistyped_field"),
    "quantity 1.5": (("lines", 0, "quantity"), 1.5, "mistyped_field"),
    "price text": (("lines", 0, "price"), "x", "mistyped_field"),
    "price object": (("lines", 0, "price"), {"amount": 1}, "mistyped_field"),
    "order_number object": (("order_number",), {"n": 1}, "mistyped_field"),
    "order_number number": (("order_number",), 123, "mistyped_field"),
    "product_number list": (("lines", 0, "product_number"), ["BK"], "mistyped_field"),
    "order_date month 13": (("order_date",), "2026-13-01", "mistyped_field"),
    "event_time hour 25": (("event_time",), "2026-11-26T25:00:00Z", "mistyped_field"),
    "event_time Feb 30": (("event_time",), "2026-02-30T10:00:00Z", "mistyped_field"),
    "event_time arabic digits": (("event_time",), "٢٠٢٦-١١-٢٦T13:00:00Z", "mistyped_field"),
    "null customer": (("customer_id",), None, "missing_field"),
    "missing customer": (("customer_id",), _DELETE, "missing_field"),
    "null line field": (("lines", 0, "quantity"), None, "missing_field"),
    "negative quantity": (("lines", 0, "quantity"), -1, "non_positive_quantity"),
    "sales not quantity x price": (("lines", 0, "sales_amount"), 10.02, "inconsistent_amount"),
}
UNKNOWN_MEMBERS = {
    "emoji product": (("lines", 0, "product_number"), "🚲-BK-1"),
    "rtl product": (("lines", 0, "product_number"), "\u202eBK-R93R-62"),
    "combining product": (("lines", 0, "product_number"), "BK-R93R-62\u0301"),
    "nul in product": (("lines", 0, "product_number"), "BK\u0000"),
    "huge product": (("lines", 0, "product_number"), "x" * 1_000_000),
    "unknown customer": (("customer_id",), 1),
    "negative customer": (("customer_id",), -5),
}


@pytest.mark.parametrize("name", sorted(WRONG_TYPES))
def test_wrong_types_nulls_and_unicode_are_quarantined_with_their_rule(reference_lake, name):
    _, products, customers = reference_lake
    path, value, rule = WRONG_TYPES[name]
    message = mutated(valid_order(products, customers), path, value)
    counts, bronze, silver, quarantine = run_stream([json.dumps(message), json.dumps(valid_order(products, customers, 2))], reference_lake)
    assert_stream_reconciles(counts, bronze, silver, quarantine)
    assert quarantine.select(RULE_COLUMN, "offset").rows() == [(rule, 0)]
    assert silver["sls_ord_num"].to_list() == [f"ST{2:016d}"]


@pytest.mark.parametrize("name", sorted(UNKNOWN_MEMBERS))
def test_unknown_customers_and_products_land_for_gold_to_point_at_the_unknown_member(reference_lake, name):
    _, products, customers = reference_lake
    path, value = UNKNOWN_MEMBERS[name]
    message = mutated(valid_order(products, customers), path, value)
    counts, bronze, silver, quarantine = run_stream([json.dumps(message), json.dumps(valid_order(products, customers, 2))], reference_lake)
    assert_stream_reconciles(counts, bronze, silver, quarantine)
    assert quarantine.height == 0
    assert sorted(silver["sls_ord_num"].to_list()) == [f"ST{1:016d}", f"ST{2:016d}"]


def test_unicode_in_text_fields_of_a_valid_order_lands(reference_lake):
    _, products, customers = reference_lake
    order = valid_order(products, customers)
    order["event_id"] = "🚲 \u202eevent e\u0301"
    counts, bronze, silver, quarantine = run_stream([json.dumps(order, ensure_ascii=False)], reference_lake)
    assert_stream_reconciles(counts, bronze, silver, quarantine)
    assert silver["event_id"].to_list() == ["🚲 \u202eevent e\u0301"]


def test_a_1_mb_value_lands(reference_lake):
    _, products, customers = reference_lake
    order = valid_order(products, customers)
    order["note"] = "n" * 1_000_000
    order["lines"] = order["lines"] * 2 + [dict(order["lines"][0], product_number=products[1])]
    counts, bronze, silver, quarantine = run_stream([json.dumps(order)], reference_lake)
    assert_stream_reconciles(counts, bronze, silver, quarantine)
    assert (counts.rows_in, counts.rows_out, counts.quarantined, counts.merged_duplicates) == (3, 2, 0, 1)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@st.composite
def kafka_values(draw, products: list[str], customers: list[int]) -> str | None:
    kind = draw(st.sampled_from(["bytes", "json", "mutated", "mutated", "valid"]))
    if kind == "bytes":
        raw = draw(st.one_of(st.none(), st.binary(max_size=60)))
        return decode_text(raw)
    if kind == "json":
        return json.dumps(draw(JSON), allow_nan=True)
    order = valid_order(products, customers, draw(st.integers(0, 3)))
    order["lines"] = [dict(order["lines"][0], product_number=draw(st.sampled_from(products))) for _ in range(draw(st.integers(1, 3)))]
    if kind == "mutated":
        field = draw(st.sampled_from([*order, "lines.0", "lines.0.quantity", "lines.0.price", "lines.0.product_number"]))
        path = tuple(int(part) if part.isdigit() else part for part in field.split("."))
        order = mutated(order, path, draw(st.one_of(JSON, st.just(_DELETE))))
    return json.dumps(order, allow_nan=True)


@STREAM_PROPERTY
@given(data=st.data())
def test_any_kafka_values_land_or_are_quarantined(reference_lake, data):
    _, products, customers = reference_lake
    values = data.draw(st.lists(kafka_values(products, customers), min_size=1, max_size=10))
    counts, bronze, silver, quarantine = run_stream(values, reference_lake)
    assert bronze.height == len(values)
    assert counts.quarantined == quarantine.height and counts.rows_out == silver.height
    assert counts.merged_duplicates >= 0
    assert quarantine.select(RULE_COLUMN, "partition", "offset").null_count().row(0) == (0, 0, 0)
    assert silver.select(pl.col("sls_price", "sls_sales").is_finite().all()).row(0) in ((True, True), (None, None))
    covered = set(quarantine["offset"].to_list()) | {offset for offset, value in bronze.select("offset", "value").rows() if _lands(value, silver)}
    assert covered == set(range(len(values))), "every message is in silver or in quarantine"


def _lands(value: str | None, silver: pl.DataFrame) -> bool:
    try:
        order_number = orjson.loads(value)["order_number"]
    except Exception:  # noqa: BLE001 - then it must be in quarantine
        return False
    if not isinstance(order_number, str):
        return False
    trimmed = pl.Series([order_number]).str.strip_chars()[0]  # as silver trims it
    return trimmed in set(silver["sls_ord_num"].to_list())



@settings(deadline=None)
@given(
    st.lists(
        st.tuples(st.none() | st.binary(max_size=40), st.none() | st.binary(max_size=10), st.integers(-1, 2**41)),
        max_size=20,
    )
)
def test_kafka_batches_are_decoded_column_wise_as_message_by_message(messages):
    """A Kafka batch is decoded in one cast (bytes -> text, invalid UTF-8 as U+FFFD, a negative
    timestamp as none): the same rows as decoding each message on its own."""
    from datetime import datetime, timezone

    from logistics_pipeline.tasks.local.stream import MESSAGE_COLUMNS, _kafka_frame, kafka_app_id

    values, keys, stamps = (list(column) for column in zip(*messages)) if messages else ([], [], [])
    partitions, offsets = [i % 3 for i in range(len(messages))], list(range(len(messages)))
    rows = pl.DataFrame({"value": values, "key": keys, "partition": partitions, "offset": offsets, "timestamp": stamps}, schema=MESSAGE_COLUMNS)
    batch = _kafka_frame("orders", rows, "b-0")
    one_by_one = _frame(
        [decode_text(v) for v in values], [decode_text(k) for k in keys], partitions, offsets,
        [datetime.fromtimestamp(s / 1000, timezone.utc) if s >= 0 else None for s in stamps],
        ["orders"] * len(messages), [kafka_app_id("orders", p) for p in partitions], "b-0",
    )
    assert batch.drop("_ingested_at").equals(one_by_one.select(batch.columns).drop("_ingested_at"))
    assert batch.schema == one_by_one.select(batch.columns).schema
