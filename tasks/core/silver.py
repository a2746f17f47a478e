"""Silver rules: typed, cleansed, deduplicated tables from bronze text columns.

Each table is a ``SilverTable``: reject rules (rows that go to quarantine), a pure
``cleanse`` function from lazy frame to lazy frame, and the key that duplicates merge on.
They are written once against narwhals' polars-style API, so the same functions run on a
polars LazyFrame locally and on a Spark DataFrame on Databricks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import narwhals as nw

from logistics_pipeline.tasks.core.contract import BRONZE_ERROR
from logistics_pipeline.tasks.core.quality import STAGED, Rule, accepted, tag_rejects

NA = "n/a"


# --- expression helpers -------------------------------------------------------------------

def text(name: str) -> nw.Expr:
    """A bronze text column, trimmed, with blank meaning null."""
    trimmed = nw.col(name).str.strip_chars()
    return nw.when(trimmed.str.len_chars() > 0).then(trimmed).otherwise(nw.lit(None, dtype=nw.String()))


def is_blank(name: str) -> nw.Expr:
    return text(name).is_null()


def matches(expr: nw.Expr, pattern: str) -> nw.Expr:
    return expr.str.contains(pattern).fill_null(False)


def _only_when(valid: nw.Expr, expr: nw.Expr) -> nw.Expr:
    return nw.when(valid).then(expr).otherwise(nw.lit(None, dtype=nw.String()))


INTEGER = r"^[+-]?[0-9]+$"
NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)$"


def to_int(name: str) -> nw.Expr:
    """Integer text to Int64; anything else becomes null (never an error)."""
    value = text(name)
    return _only_when(matches(value, INTEGER) & (value.str.len_chars() <= 18), value).cast(nw.Int64())


def to_float(name: str) -> nw.Expr:
    """Decimal text to Float64; anything else becomes null."""
    value = text(name)
    return _only_when(matches(value, NUMBER) & (value.str.len_chars() <= 30), value).cast(nw.Float64())


def is_integer(name: str) -> nw.Expr:
    return ~to_int(name).is_null()


_DATE_LAYOUTS = {
    # layout: (pattern, strftime format, (year, month, day) slices as (offset, length))
    "yyyymmdd": (r"^[0-9]{8}$", "%Y%m%d", ((0, 4), (4, 2), (6, 2))),
    "yyyy-mm-dd": (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", "%Y-%m-%d", ((0, 4), (5, 2), (8, 2))),
}


def to_date(name: str, layout: str) -> nw.Expr:
    """Date text in ``layout`` to Date; malformed or impossible dates (Feb 30) become null."""
    return _checked_date(_date_shaped(name, layout), layout)


def _date_shaped(name: str, layout: str) -> nw.Expr:
    """The trimmed text when it has the layout's shape, else null."""
    value = text(name)
    return _only_when(matches(value, _DATE_LAYOUTS[layout][0]), value)


def _checked_date(shaped: nw.Expr, layout: str) -> nw.Expr:
    """Shaped date text to Date when it is a real date (Feb 30 is not), else null; never an error."""
    _, fmt, ((y0, yn), (m0, mn), (d0, dn)) = _DATE_LAYOUTS[layout]
    year = shaped.str.slice(y0, yn).cast(nw.Int64())
    month = shaped.str.slice(m0, mn).cast(nw.Int64())
    day = shaped.str.slice(d0, dn).cast(nw.Int64())
    return _only_when(is_real_date(year, month, day).fill_null(False), shaped).str.to_date(fmt)


def is_real_date(year: nw.Expr, month: nw.Expr, day: nw.Expr) -> nw.Expr:
    """True for a day that exists (Feb 29 in leap years only; no month 13 or April 31)."""
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    month_days = (
        nw.when(month == 2).then(nw.when(leap).then(29).otherwise(28))
        .otherwise(nw.when(month.is_in([4, 6, 9, 11])).then(30).otherwise(31))
    )
    return (year >= 1) & month.is_between(1, 12) & (day >= 1) & (day <= month_days)


def code_map(name: str, mapping: dict[str, str], default: str = NA) -> nw.Expr:
    """Trimmed, upper-cased codes mapped to labels; anything else becomes ``default``."""
    code = nw.col(name).str.strip_chars().str.to_uppercase()
    result: nw.Expr = nw.lit(default)
    for key, label in mapping.items():
        result = nw.when(code == key).then(nw.lit(label)).otherwise(result)
    return result


# --- the tables ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SilverTable:
    """One silver table: where it comes from, what it rejects, how it cleanses, what merges."""

    name: str
    bronze: str
    rules: tuple[Rule, ...]
    cleanse: Callable[[nw.LazyFrame], nw.LazyFrame]
    merge_key: tuple[str, ...]
    merge_order: tuple[str, ...] = ("_line",)
    dates: tuple[tuple[str, str], ...] = ()
    """(column, layout) of the date columns, parsed once before the rules (``stage_dates``)."""
    stage: Callable[[nw.LazyFrame], nw.LazyFrame] | None = None
    """Adds more ``STAGED`` helper columns the rules and the cleanse share; quarantine drops them."""
    derive: Callable[[nw.LazyFrame], nw.LazyFrame] | None = None
    """Columns computed across rows after duplicates are merged (a product's version end dates)."""
    keeps_history: bool = False
    """A dimension's source: every version of its rows is kept in the lake (``tasks.core.history``)."""

    def __post_init__(self) -> None:
        if self.merge_order[-1:] != ("_line",):
            raise ValueError(f"silver {self.name}: merge_order must end with _line, which no two rows share")

    def dedupe(self, frame: nw.LazyFrame) -> nw.LazyFrame:
        """Keep the last row per merge key in ``merge_order`` (later rows win, a null orders
        first). One window filter per order column, each keeping a key's rows that hold its
        greatest value: no sort of the whole table, about half the time of sort-then-unique.
        ``_line`` comes last and is unique, so exactly one row per key remains."""
        for column in self.merge_order:
            latest = nw.col(column).max().over(*self.merge_key)
            frame = frame.filter((nw.col(column) == latest).fill_null(False) | latest.is_null())
        return frame


def missing(column: str, rule: str) -> Rule:
    return Rule(rule, lambda: is_blank(column))


def crm_customers(frame: nw.LazyFrame) -> nw.LazyFrame:
    return frame.select(
        to_int("cst_id").alias("cst_id"),
        text("cst_key").alias("cst_key"),
        text("cst_firstname").alias("cst_firstname"),
        text("cst_lastname").alias("cst_lastname"),
        code_map("cst_marital_status", {"S": "Single", "M": "Married"}).alias("cst_marital_status"),
        code_map("cst_gndr", {"F": "Female", "M": "Male"}).alias("cst_gndr"),
        staged("cst_create_date").alias("cst_create_date"),
        nw.col("_ingested_at"),
        nw.col("_line"),
    )


def crm_products(frame: nw.LazyFrame) -> nw.LazyFrame:
    product_key = text("prd_key")
    return frame.select(
        to_int("prd_id").alias("prd_id"),
        product_key.str.slice(0, 5).str.replace_all("-", "_").alias("cat_id"),
        product_key.str.slice(6).alias("prd_key"),
        text("prd_nm").alias("prd_nm"),
        to_float("prd_cost").fill_null(0.0).alias("prd_cost"),
        code_map("prd_line", {"M": "Mountain", "R": "Road", "S": "Other Sales", "T": "Touring"}).alias("prd_line"),
        staged("prd_start_dt").alias("prd_start_dt"),
        nw.col("_ingested_at"),
        nw.col("_line"),
    )


def product_versions(products: nw.LazyFrame) -> nw.LazyFrame:
    """A version ends the day before the next version of the same product number starts; the
    current version has no end date. Computed after duplicate ids are merged and over the
    product number (what sales reference), so every product number has exactly one current
    version."""
    next_start = nw.col("prd_start_dt").shift(-1).over("prd_key", order_by=["prd_start_dt", "_line"])
    end = next_start.dt.offset_by("-1d").cast(nw.Date())  # Spark's offset gives a timestamp
    return products.with_columns(end.alias("prd_end_dt")).select(
        "prd_id", "cat_id", "prd_key", "prd_nm", "prd_cost", "prd_line", "prd_start_dt", "prd_end_dt", "_ingested_at", "_line",
    )


def staged(name: str) -> nw.Expr:
    """A column the table's staging step computed (see ``SilverTable.dates`` and ``stage``)."""
    return nw.col(STAGED + name)


def stage_dates(frame: nw.LazyFrame, dates: tuple[tuple[str, str], ...]) -> nw.LazyFrame:
    """Each (column, layout) parsed once into ``staged(column)``, in two steps: the shaped text,
    then the checked date. ``to_date`` inline nests the text about ten times in one expression;
    staged, a date costs a fifth as much."""
    if not dates:
        return frame
    shaped = frame.with_columns(*(_date_shaped(name, layout).alias(f"{STAGED}text_{name}") for name, layout in dates))
    return shaped.with_columns(
        *(_checked_date(staged(f"text_{name}"), layout).alias(STAGED + name) for name, layout in dates)
    ).drop([f"{STAGED}text_{name}" for name, _ in dates])


def stage_sales(frame: nw.LazyFrame) -> nw.LazyFrame:
    """Quantity, sales and price parsed once, and sales and price repaired as the reference
    rules do (see README: silver rules). The rules and the cleanse read these columns: written
    inline, each repaired amount nests the parsing several times over, and the engines do not
    share those repeats (it was 99% of the table's tagging time)."""
    typed = frame.with_columns(
        to_int("sls_quantity").alias(STAGED + "quantity"),
        to_float("sls_sales").alias(STAGED + "sales_in"),
        to_float("sls_price").alias(STAGED + "price_in"),
    )
    quantity, sales_in, price_in = staged("quantity"), staged("sales_in"), staged("price_in")
    expected = quantity * price_in.abs()
    sales_bad = sales_in.is_null() | (sales_in <= 0) | (sales_in != expected).fill_null(False)
    price_bad = price_in.is_null() | (price_in <= 0)
    return typed.with_columns(
        nw.when(sales_bad).then(expected).otherwise(sales_in).alias(STAGED + "sales"),
        nw.when(price_bad).then(sales_in / quantity).otherwise(price_in).alias(STAGED + "price"),
    )


def crm_sales(frame: nw.LazyFrame) -> nw.LazyFrame:
    return frame.select(
        text("sls_ord_num").alias("sls_ord_num"),
        text("sls_prd_key").alias("sls_prd_key"),
        to_int("sls_cust_id").alias("sls_cust_id"),
        staged("sls_order_dt").alias("sls_order_dt"),
        staged("sls_ship_dt").alias("sls_ship_dt"),
        staged("sls_due_dt").alias("sls_due_dt"),
        staged("sales").alias("sls_sales"),
        staged("quantity").alias("sls_quantity"),
        staged("price").alias("sls_price"),
        nw.col("_ingested_at"),
        nw.col("_line"),
    )


def _amount_unrecoverable() -> nw.Expr:
    sales, price = staged("sales"), staged("price")
    return sales.is_null() | price.is_null() | (price <= 0) | (sales <= 0)


AMOUNT_TOLERANCE = 0.01
"""Gold's ``assert_price_quantity_eq_sales`` allows this much; silver quarantines what exceeds it."""


def amount_inconsistent(sales: nw.Expr, quantity: nw.Expr, price: nw.Expr) -> nw.Expr:
    """Sales differ from quantity x price by more than gold's test allows (the same arithmetic
    as the test: the product of quantity and price, in float64)."""
    return (sales - quantity * price).abs() > AMOUNT_TOLERANCE


def erp_customers(frame: nw.LazyFrame, today: date | None = None) -> nw.LazyFrame:
    cid = text("CID")
    birthdate = staged("BDATE")
    return frame.select(
        nw.when(cid.str.starts_with("NAS")).then(cid.str.slice(3)).otherwise(cid).alias("cid"),
        nw.when(birthdate > nw.lit(today or date.today())).then(nw.lit(None, dtype=nw.Date())).otherwise(birthdate).alias("bdate"),
        code_map("GEN", {"F": "Female", "FEMALE": "Female", "M": "Male", "MALE": "Male"}).alias("gen"),
        nw.col("_ingested_at"),
        nw.col("_line"),
    )


def erp_locations(frame: nw.LazyFrame) -> nw.LazyFrame:
    country = text("CNTRY")
    return frame.select(
        text("CID").str.replace_all("-", "").alias("cid"),
        nw.when(country.is_null()).then(nw.lit(NA))
        .otherwise(
            nw.when(country == "DE").then(nw.lit("Germany"))
            .otherwise(nw.when(country.is_in(["US", "USA"])).then(nw.lit("United States")).otherwise(country))
        ).alias("cntry"),
        nw.col("_ingested_at"),
        nw.col("_line"),
    )


def erp_categories(frame: nw.LazyFrame) -> nw.LazyFrame:
    return frame.select(
        text("ID").alias("id"),
        text("CAT").alias("cat"),
        text("SUBCAT").alias("subcat"),
        text("MAINTENANCE").alias("maintenance"),
        nw.col("_ingested_at"),
        nw.col("_line"),
    )


SILVER_TABLES: tuple[SilverTable, ...] = (
    SilverTable(
        "crm_cust_info",
        "crm_cust_info",
        rules=(
            missing("cst_id", "missing_customer_id"),
            Rule("non_numeric_customer_id", lambda: ~is_integer("cst_id")),
            Rule("negative_customer_id", lambda: to_int("cst_id") < 0),
            missing("cst_key", "missing_customer_number"),
        ),
        cleanse=crm_customers,
        merge_key=("cst_id",),
        dates=(("cst_create_date", "yyyy-mm-dd"),),
        merge_order=("cst_create_date", "_line"),
        keeps_history=True,
    ),
    SilverTable(
        "crm_prd_info",
        "crm_prd_info",
        rules=(
            Rule("non_numeric_product_id", lambda: ~is_integer("prd_id")),
            Rule("negative_product_id", lambda: to_int("prd_id") < 0),
            Rule("malformed_product_key", lambda: is_blank("prd_key") | (text("prd_key").str.len_chars() < 7)),
            Rule("missing_start_date", lambda: staged("prd_start_dt").is_null()),
        ),
        cleanse=crm_products,
        merge_key=("prd_id",),
        dates=(("prd_start_dt", "yyyy-mm-dd"),),
        derive=product_versions,
        keeps_history=True,
    ),
    SilverTable(
        "crm_sales_details",
        "crm_sales_details",
        rules=(
            missing("sls_ord_num", "missing_order_number"),
            missing("sls_prd_key", "missing_product_number"),
            missing("sls_cust_id", "missing_customer_id"),
            Rule("non_numeric_customer_id", lambda: ~is_integer("sls_cust_id")),
            Rule("invalid_quantity", lambda: ~(staged("quantity") > 0).fill_null(False)),
            Rule("unrecoverable_price", _amount_unrecoverable),
            Rule("inconsistent_amount", lambda: amount_inconsistent(staged("sales"), staged("quantity"), staged("price"))),
            Rule("invalid_ship_date", lambda: staged("sls_ship_dt").is_null()),
            Rule("invalid_due_date", lambda: staged("sls_due_dt").is_null()),
            Rule("ship_before_order", lambda: staged("sls_ship_dt") < staged("sls_order_dt")),
        ),
        cleanse=crm_sales,
        merge_key=("sls_ord_num", "sls_prd_key"),
        dates=(("sls_order_dt", "yyyymmdd"), ("sls_ship_dt", "yyyymmdd"), ("sls_due_dt", "yyyymmdd")),
        stage=stage_sales,
    ),
    SilverTable(
        "erp_cust_az12",
        "erp_cust_az12",
        rules=(missing("CID", "missing_customer_id"),),
        cleanse=erp_customers,
        merge_key=("cid",),
        dates=(("BDATE", "yyyy-mm-dd"),),
        keeps_history=True,
    ),
    SilverTable(
        "erp_loc_a101",
        "erp_loc_a101",
        rules=(missing("CID", "missing_customer_id"),),
        cleanse=erp_locations,
        merge_key=("cid",),
        keeps_history=True,
    ),
    SilverTable(
        "erp_px_cat_g1v2",
        "erp_px_cat_g1v2",
        rules=(missing("ID", "missing_category_id"),),
        cleanse=erp_categories,
        merge_key=("id",),
        keeps_history=True,
    ),
)

SILVER_BY_NAME = {table.name: table for table in SILVER_TABLES}


MALFORMED_ROW = Rule("malformed_row", lambda: ~nw.col(BRONZE_ERROR).is_null())
"""Bronze could not read the row as a record (its ``_bronze_error`` says why); checked before every table's own rules."""


def with_bronze_error(bronze: nw.LazyFrame) -> nw.LazyFrame:
    """Bronze tables written before row errors were recorded (or by an engine that does not record them) have none."""
    if BRONZE_ERROR in bronze.columns:
        return bronze
    return bronze.with_columns(nw.lit(None, dtype=nw.String()).alias(BRONZE_ERROR))


def with_staged_columns(table: SilverTable, bronze: nw.LazyFrame) -> nw.LazyFrame:
    """Bronze with the helper columns the table's rules and cleanse read (dates, then ``stage``)."""
    staged_bronze = stage_dates(bronze, table.dates)
    return table.stage(staged_bronze) if table.stage else staged_bronze


def tag_rows(table: SilverTable, bronze: nw.LazyFrame) -> nw.LazyFrame:
    """Bronze rows tagged (``_rule``) with the first rule they break, ``malformed_row`` first."""
    return tag_rejects(with_staged_columns(table, with_bronze_error(bronze)), (MALFORMED_ROW, *table.rules))


def build(table: SilverTable, bronze: nw.LazyFrame) -> tuple[nw.LazyFrame, nw.LazyFrame, nw.LazyFrame]:
    """(tagged, cleansed, silver): rows tagged with the rule they break (``malformed_row`` first),
    the accepted rows cleansed, and those rows with duplicates merged. Lazy on every engine."""
    tagged = tag_rows(table, bronze)
    cleansed = table.cleanse(accepted(tagged))
    return tagged, cleansed, merged(table, cleansed)


def merged(table: SilverTable, cleansed: nw.LazyFrame) -> nw.LazyFrame:
    """Cleansed rows with duplicates merged (then ``derive``d): the silver table."""
    deduped = table.dedupe(cleansed)
    return (table.derive(deduped) if table.derive else deduped).drop("_line")
