"""Generate the CRM/ERP source files the pipeline ingests: synthetic, dirty, deterministic.

The six CSVs have exactly the layout, headers and value formats of the public reference
dataset (../shared/reference-data), including its kinds of dirt at similar rates, so the
silver rules written against one work on the other. Every value is made up here: names come
from small faker pools, everything else from numpy. The same (scale, seed) always gives
byte-identical files (for the same faker, numpy and polars versions).

    python -m logistics_pipeline.datasets.generate --out datasets --scale 0.1 --seed 42
"""

from __future__ import annotations

import argparse
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import BinaryIO

import numpy as np
import polars as pl
from faker import Faker

CUST_INFO = "source_crm/cust_info.csv"
PRD_INFO = "source_crm/prd_info.csv"
SALES_DETAILS = "source_crm/sales_details.csv"
CUST_AZ12 = "source_erp/CUST_AZ12.csv"
LOC_A101 = "source_erp/LOC_A101.csv"
PX_CAT_G1V2 = "source_erp/PX_CAT_G1V2.csv"
FILES = (CUST_INFO, PRD_INFO, SALES_DETAILS, CUST_AZ12, LOC_A101, PX_CAT_G1V2)

# Sizes at scale 1, as in the reference; customers and sales scale, the catalog does not.
BASE_CUSTOMERS = 18_484
BASE_SALES_LINES = 60_400
CUSTOMERS_PER_CHUNK = 250_000  # customers (and their ERP rows) held in memory at a time
ORDERS_PER_CHUNK = 230_000  # about 500k sales lines held in memory at a time

FIRST_CUSTOMER_ID = 11_000
FIRST_ORDER_NUMBER = 43_697
FIRST_PRODUCT_ID = 210

CUSTOMERS_CREATED_FROM = date(2025, 10, 6)
CUSTOMERS_CREATED_DAYS = 110
BIRTHS_FROM, BIRTHS_TO = date(1935, 1, 1), date(1995, 12, 31)
ORDERS_FROM, ORDERS_TO = date(2010, 12, 29), date(2014, 1, 28)
ORDER_GROWTH_DAYS = 330  # e-folding time of the daily order volume: business grows
SHIP_AFTER_DAYS, DUE_AFTER_DAYS = 7, 12

# Share of orders with 1, 2, ... 8 lines (mean about 2.18 lines per order).
LINES_PER_ORDER = np.array([0.35, 0.295, 0.212, 0.113, 0.025, 0.004, 0.0008, 0.0002])
LINES_PER_ORDER = LINES_PER_ORDER / LINES_PER_ORDER.sum()

NAME_POOL_SIZE = 400  # faker names drawn per locale and kind; rows sample from the pools

# Rates of each kind of dirt, per row of the file it soils (about the reference's rates).
CUSTOMER_DIRT = {
    "junk_row": 0.0002,  # empty cst_id, junk cst_key
    "duplicate_id": 0.0003,  # an older, partial row precedes the complete one
    "first_lead_space": 0.0008,
    "first_trail_space": 0.0005,
    "last_lead_space": 0.0009,
    "last_trail_space": 0.0005,
    "marital_blank": 0.0004,
}
CRM_GENDER_BLANK = 0.25
MARRIED_SHARE = 0.54
ERP_NAS_PREFIX = 0.6
ERP_GENDER_DIRT = {
    "future_birthdate": 0.0009,
    "gender_blank": 0.08,
    "gender_short": 0.0004,  # M / F
    "gender_trailing_space": 0.0001,  # 'F '
    "gender_whitespace": 0.0002,  # ' ' or '  '
}
LOCATION_DIRT = {"country_blank": 0.018, "country_whitespace": 0.0003, "country_padded": 0.0005}
PRODUCT_DIRT = {"cost_empty": 0.005, "line_blank": 0.043}
PRODUCT_VERSIONS = {"two_versions": 0.176, "three_versions": 0.085}  # share of products
SALES_DIRT = {  # disjoint rows; price dirt keeps sales = quantity x price
    "price_empty": 0.00012,
    "price_negative": 0.00008,
    "sales_empty": 0.00013,
    "sales_zero": 0.00004,
    "sales_negative": 0.00005,
    "sales_mismatch": 0.00017,
}
ORDER_DATE_DIRT = {"order_date_zero": 0.00028, "order_date_short": 0.00004}
MULTI_QUANTITY = 0.0002


@dataclass(frozen=True)
class Country:
    """Where customers live: the faker locale for their names, how LOC_A101 spells it."""

    locale: str
    share: float
    spellings: tuple[tuple[str, float], ...]


COUNTRIES = (
    Country("en_US", 0.40, (("United States", 0.50), ("USA", 0.35), ("US", 0.15))),
    Country("en_AU", 0.20, (("Australia", 1.0),)),
    Country("en_GB", 0.11, (("United Kingdom", 1.0),)),
    Country("fr_FR", 0.10, (("France", 1.0),)),
    Country("de_DE", 0.10, (("Germany", 0.68), ("DE", 0.32))),
    Country("en_CA", 0.09, (("Canada", 1.0),)),
)

# PX_CAT_G1V2: id, category, subcategory, needs maintenance.
CATEGORIES = (
    ("AC_BT", "Accessories", "Bottles", "No"),
    ("AC_CG", "Accessories", "Bottle Cages", "No"),
    ("AC_BG", "Accessories", "Bags", "No"),
    ("AC_CM", "Accessories", "Cycle Computers", "Yes"),
    ("AC_BL", "Accessories", "Bells", "No"),
    ("AC_HM", "Accessories", "Helmets", "No"),
    ("AC_LT", "Accessories", "Lights", "Yes"),
    ("AC_LK", "Accessories", "Locks", "Yes"),
    ("AC_PM", "Accessories", "Pumps", "Yes"),
    ("AC_CR", "Accessories", "Car Racks", "Yes"),
    ("AC_TL", "Accessories", "Tools", "Yes"),
    ("AC_TR", "Accessories", "Trainers", "Yes"),
    ("AC_TY", "Accessories", "Tires and Tubes", "Yes"),
    ("BI_RO", "Bikes", "Road Bikes", "Yes"),
    ("BI_GR", "Bikes", "Gravel Bikes", "Yes"),
    ("BI_MT", "Bikes", "Mountain Bikes", "Yes"),
    ("BI_EL", "Bikes", "Electric Bikes", "Yes"),
    ("BI_CY", "Bikes", "City Bikes", "Yes"),
    ("BI_KD", "Bikes", "Kids Bikes", "Yes"),
    ("CL_JR", "Clothing", "Jerseys", "No"),
    ("CL_BB", "Clothing", "Shorts", "No"),
    ("CL_GV", "Clothing", "Gloves", "No"),
    ("CL_SK", "Clothing", "Socks", "No"),
    ("CL_CP", "Clothing", "Caps", "No"),
    ("CL_JK", "Clothing", "Jackets", "No"),
    ("CL_SH", "Clothing", "Shoes", "No"),
    ("CL_WM", "Clothing", "Warmers", "No"),
    ("CO_RF", "Components", "Road Frames", "Yes"),
    ("CO_MF", "Components", "Mountain Frames", "Yes"),
    ("CO_GF", "Components", "Gravel Frames", "Yes"),
    ("CO_WS", "Components", "Wheelsets", "Yes"),
    ("CO_CA", "Components", "Cassettes", "Yes"),
    ("CO_SF", "Components", "Shifters", "Yes"),
    ("CO_RO", "Components", "Brake Rotors", "Yes"),
    ("CO_SP", "Components", "Seatposts", "No"),
    ("CO_ST", "Components", "Stems", "No"),
    ("CO_CR", "Components", "Chainrings", "Yes"),
)


@dataclass(frozen=True)
class Family:
    """Products made alike: each stem comes in every color and size listed."""

    category: str  # may be missing from CATEGORIES on purpose (CO_PE)
    code: str  # product type, first part of the product number
    line: str  # M/R/S/T, unless the stem says Mountain, Road or Touring
    cost: tuple[int, int]
    stems: tuple[str, ...]
    colors: tuple[str, ...] = ()
    sizes: tuple[str, ...] = ()


COLOR_CODES = {"Black": "B", "Red": "R", "Blue": "U", "Silver": "S", "Grey": "A", "White": "W"}
BIKE_SIZES = ("44", "48", "52", "56", "60")
MTB_SIZES = ("38", "42", "46", "50", "54")
CLOTHING_SIZES = ("S", "M", "L", "XL")

FAMILIES = (
    # Bikes
    Family("BI_RO", "BK", "R", (450, 2000), ("Road-250", "Road-550", "Road-850"), ("Black", "Red"), BIKE_SIZES),
    Family("BI_GR", "BK", "R", (500, 1500), ("Gravel-300", "Gravel-600"), ("Grey", "Blue"), ("50", "54", "58")),
    Family("BI_MT", "BK", "M", (400, 2100), ("Mountain-200", "Mountain-400", "Mountain-700"), ("Black", "Silver"),
           MTB_SIZES),
    Family("BI_EL", "BK", "T", (1200, 2200), ("E-Touring-500", "E-City-300"), ("White",), ("46", "52", "58")),
    Family("BI_CY", "BK", "S", (250, 600), ("City-100", "City-300"), ("Blue", "White"), ("46", "52")),
    Family("BI_KD", "BK", "S", (90, 200), ("Kids-16", "Kids-20"), ("Red", "Blue")),
    # Components (pedals on purpose in a category the ERP does not know)
    Family("CO_RF", "FR", "R", (150, 1100), ("LL Road Frame", "ML Road Frame", "HL Road Frame"), ("Black", "Red"),
           BIKE_SIZES),
    Family("CO_MF", "FR", "M", (150, 1000), ("LL Mountain Frame", "ML Mountain Frame", "HL Mountain Frame"),
           ("Black", "Silver"), MTB_SIZES[:4]),
    Family("CO_GF", "FR", "R", (250, 800), ("ML Gravel Frame", "HL Gravel Frame"), ("Grey", "Blue"),
           ("50", "54", "58")),
    Family("CO_WS", "WH", "S", (60, 500), ("LL Road Wheelset", "HL Road Wheelset", "LL Mountain Wheelset",
                                          "HL Mountain Wheelset", "Touring Wheelset")),
    Family("CO_CA", "CS", "S", (20, 90), ("10-Speed Cassette", "11-Speed Cassette", "12-Speed Cassette")),
    Family("CO_SF", "SF", "S", (25, 120), ("Road Shifters", "Mountain Shifters", "Touring Shifters")),
    Family("CO_RO", "RT", "S", (12, 40), ("Brake Rotor - 140 mm", "Brake Rotor - 160 mm", "Brake Rotor - 180 mm")),
    Family("CO_SP", "SP", "S", (15, 90), ("LL Seatpost", "HL Seatpost, Carbon")),
    Family("CO_ST", "SM", "S", (12, 60), ("Road Stem", "Mountain Stem"), (), ("90", "110")),
    Family("CO_CR", "CR", "S", (20, 80), ("Road Chainring", "Mountain Chainring")),
    Family("CO_PE", "PD", "S", (15, 45), ("LL Road Pedal", "HL Road Pedal", "LL Mountain Pedal", "HL Mountain Pedal",
                                         "Touring Pedal", "Clipless Pedal, Road")),
    # Clothing
    Family("CL_JR", "JR", "S", (20, 50), ("Short-Sleeve Team Jersey", "Long-Sleeve Team Jersey", "Women's Team Jersey",
                                         "Thermal Jersey"), (), CLOTHING_SIZES),
    Family("CL_BB", "SH", "S", (15, 40), ("Men's Bib Shorts", "Women's Bib Shorts", "Men's Baggy Shorts"), (),
           CLOTHING_SIZES[:3]),
    Family("CL_GV", "GL", "S", (6, 20), ("Full-Finger Gloves", "Half-Finger Gloves", "Winter Gloves"), (),
           CLOTHING_SIZES[:3]),
    Family("CL_SK", "SO", "S", (2, 6), ("Racing Socks", "Wool Socks"), (), ("M", "L")),
    Family("CL_CP", "CA", "S", (3, 9), ("Team Cap", "Winter Cap, Wool")),
    Family("CL_JK", "JK", "S", (25, 70), ("Rain Jacket, Packable", "Wind Jacket"), (), CLOTHING_SIZES[:3]),
    Family("CL_SH", "SE", "S", (30, 90), ("Road Shoes", "Mountain Shoes"), (), ("40", "42", "44", "46")),
    Family("CL_WM", "WM", "S", (5, 12), ("Arm Warmers", "Leg Warmers"), (), ("M", "L")),
    # Accessories
    Family("AC_BT", "WB", "S", (1, 5), ("Water Bottle - 500 ml", "Water Bottle - 750 ml", "Insulated Bottle - 600 ml")),
    Family("AC_CG", "BC", "S", (2, 8), ("Road Bottle Cage", "Mountain Bottle Cage", "Side-Entry Cage")),
    Family("AC_BG", "BG", "S", (8, 45), ("Saddle Bag", "Frame Bag", "Handlebar Bag", "Touring Panniers, Pair")),
    Family("AC_CM", "CM", "S", (12, 150), ("Basic Cycle Computer", "GPS Cycle Computer", "Heart Rate Strap")),
    Family("AC_BL", "BL", "S", (1, 5), ("Classic Bell", "Mini Bell")),
    Family("AC_HM", "HL", "S", (10, 60), ("Sport Helmet", "Aero Road Helmet", "Mountain Helmet"),
           ("Black", "Red", "Blue")),
    Family("AC_LT", "LT", "S", (5, 40), ("Headlight - 400 lm", "Headlight - 1000 lm", "Taillight - Battery-Powered")),
    Family("AC_LK", "LO", "S", (8, 30), ("Cable Lock", "U-Lock", "Folding Lock")),
    Family("AC_PM", "PU", "S", (6, 30), ("Mini Pump", "Floor Pump", "Mountain Pump")),
    Family("AC_CR", "RA", "S", (40, 160), ("Hitch Rack - 2-Bike", "Hitch Rack - 4-Bike", "Roof Rack")),
    Family("AC_TL", "TL", "S", (3, 40), ("Multi-Tool, 16 Functions", "Chain Tool", "Tire Levers", "Torque Wrench")),
    Family("AC_TR", "TR", "S", (90, 400), ("Fluid Trainer", "Smart Trainer")),
    Family("AC_TY", "TI", "S", (6, 20), ("LL Road Tire", "ML Road Tire", "HL Road Tire", "LL Mountain Tire",
                                        "ML Mountain Tire", "HL Mountain Tire", "Touring Tire")),
    Family("AC_TY", "TT", "S", (1, 4), ("Road Tire Tube", "Mountain Tire Tube", "Touring Tire Tube", "Patch Kit")),
)

# How often each kind of product is bought (bikes and their kit sell, spare frames rarely).
SALES_APPEAL = {"AC": 3.0, "CL": 2.0, "BI": 1.0, "CO": 0.05}


# --- dirt helpers -------------------------------------------------------------------------


def pick_rows(rng: np.random.Generator, n: int, rates: dict[str, float]) -> dict[str, np.ndarray]:
    """Disjoint row indices for each kind of dirt: round(rate * n) rows, at least one each,
    so rates hold on big files and every kind still shows up on small ones."""
    counts = [max(1, round(rate * n)) for rate in rates.values()]
    chosen = rng.choice(n, size=min(n, sum(counts)), replace=False)
    return dict(zip(rates, np.split(chosen, np.cumsum(counts)[:-1])))


def set_at(values: pl.Series, rows: np.ndarray, new: pl.Series | list | None) -> pl.Series:
    """A copy of `values` with `rows` replaced (None makes them blank)."""
    out = values.clone()
    if len(rows):
        out.scatter(rows, new)
    return out


def spaces(rng: np.random.Generator, n: int) -> pl.Series:
    """n strings of one or two spaces."""
    return pl.Series([" " * k for k in rng.integers(1, 3, n)], dtype=pl.String)


def pad(rng: np.random.Generator, values: pl.Series, rows: np.ndarray, side: str) -> pl.Series:
    """Give some values a stray leading or trailing space or two, as hand-typed data has."""
    picked, extra = values.gather(rows), spaces(rng, len(rows))
    return set_at(values, rows, extra + picked if side == "lead" else picked + extra)


def yyyymmdd(days: np.ndarray) -> np.ndarray:
    """Dates (datetime64[D]) as the integers the sales export uses, e.g. 20130105."""
    years = days.astype("datetime64[Y]").astype(np.int64) + 1970
    months = days.astype("datetime64[M]").astype(np.int64) % 12 + 1
    day = (days - days.astype("datetime64[M]")).astype(np.int64) + 1
    return years * 10_000 + months * 100 + day


def random_days(rng: np.random.Generator, start: date, end: date, n: int) -> np.ndarray:
    """n uniform dates in [start, end] as datetime64[D]."""
    first = np.datetime64(start, "D")
    return first + rng.integers(0, (end - start).days + 1, n)


# --- categories and catalog ---------------------------------------------------------------


def categories_frame() -> pl.DataFrame:
    """PX_CAT_G1V2: the clean ERP category list."""
    return pl.DataFrame(list(CATEGORIES), schema=["ID", "CAT", "SUBCAT", "MAINTENANCE"], orient="row")


def product_line(stem: str, default: str) -> str:
    """The line the name implies (a Road Frame is R), else the family's."""
    for word, line in (("Mountain", "M"), ("Road", "R"), ("Touring", "T")):
        if word in stem:
            return line
    return default


def model_code(rng: np.random.Generator, used: set[str], code: str, letter: str, digits: int) -> str:
    """A model code unique within its product type, like R92 or M005."""
    while True:
        model = letter + str(rng.integers(0, 10**digits)).zfill(digits)
        if code + model not in used:
            used.add(code + model)
            return model


def catalog_products(rng: np.random.Generator) -> pl.DataFrame:
    """One row per product (every stem x color x size): number, key, name, line, cost, price."""
    rows, used = [], set()
    for family in FAMILIES:
        for stem in family.stems:
            line = product_line(stem, family.line)
            letter = line if line in "MRT" else stem[0].upper()
            cost = int(rng.integers(*family.cost, endpoint=True))
            digits = 2 if family.colors else 3
            model = model_code(rng, used, family.code, letter, digits)
            for color in family.colors or ("",):
                for size in family.sizes or ("",):
                    number = f"{family.code}-{model}{COLOR_CODES.get(color, '')}" + (f"-{size}" if size else "")
                    name = stem + (f" {color}" if color else "") + (f"- {size}" if size else "")
                    key = f"{family.category.replace('_', '-')}-{number}"
                    price = max(2, round(cost * rng.uniform(1.5, 2.1)))
                    rows.append((number, key, name, line, cost, price, family.category[:2]))
    schema = ["number", "key", "name", "line", "cost", "price", "group"]
    return pl.DataFrame(rows, schema=schema, orient="row")


def version_counts(rng: np.random.Generator, n_products: int) -> np.ndarray:
    """How many versions each product has: most one, some two or three."""
    counts = np.ones(n_products, dtype=np.int64)
    rows = pick_rows(rng, n_products, PRODUCT_VERSIONS)
    counts[rows["two_versions"]], counts[rows["three_versions"]] = 2, 3
    return counts


def prd_info_frame(rng: np.random.Generator, products: pl.DataFrame) -> pl.DataFrame:
    """prd_info: every version of every product, oldest first, with the source's wrong end dates.

    Versions start on July 1st of consecutive years; the latest has no end date; an older
    version's end date lies (wrongly, as in the source) years before its own start."""
    versions = version_counts(rng, products.height)
    product = np.repeat(np.arange(products.height), versions)
    n = len(product)
    version = np.arange(n) - np.repeat(np.cumsum(versions) - versions, versions)
    is_latest = version == versions[product] - 1
    first_year = rng.integers(2009, 2011, products.height)[product]
    start = np.array([np.datetime64(f"{y}-07-01", "D") for y in first_year + version])
    end = start - rng.integers(900, 1800, n)
    cost_factor = rng.uniform(0.85, 0.95, n) ** (versions[product] - 1 - version)
    cost = np.maximum(1, np.round(products["cost"].to_numpy()[product] * cost_factor)).astype(np.int64)
    dirt = pick_rows(rng, n, PRODUCT_DIRT)
    line = products["line"].gather(product) + " "
    return pl.DataFrame(
        {
            "prd_id": np.arange(FIRST_PRODUCT_ID, FIRST_PRODUCT_ID + n),
            "prd_key": products["key"].gather(product),
            "prd_nm": products["name"].gather(product),
            "prd_cost": set_at(pl.Series(cost), dirt["cost_empty"], None),
            "prd_line": set_at(line, dirt["line_blank"], None),
            "prd_start_dt": pl.Series(start, dtype=pl.Date),
            "prd_end_dt": set_at(pl.Series(end, dtype=pl.Date), np.flatnonzero(is_latest), None),
        }
    )


# --- customers ----------------------------------------------------------------------------


def name_pools(rng: np.random.Generator) -> tuple[pl.Series, pl.Series]:
    """First names (per country, female then male) and last names (per country), drawn once.

    Rows index into these pools, so faker runs a few thousand times whatever the scale."""
    first, last = [], []
    for country in COUNTRIES:
        fake = Faker(country.locale)
        fake.seed_instance(int(rng.integers(2**31)))
        first += [fake.first_name_female() for _ in range(NAME_POOL_SIZE)]
        first += [fake.first_name_male() for _ in range(NAME_POOL_SIZE)]
        last += [fake.last_name() for _ in range(NAME_POOL_SIZE)]
    return pl.Series(first, dtype=pl.String), pl.Series(last, dtype=pl.String)


def draw_customers(
    rng: np.random.Generator, pools: tuple[pl.Series, pl.Series], first_row: int, n: int, total: int
) -> pl.DataFrame:
    """Customers first_row..first_row+n-1 of `total`, the true people behind both systems:
    id, country, sex, names, marital status, and a creation date that rises with the id."""
    first_pool, last_pool = pools
    shares = np.array([c.share for c in COUNTRIES])
    country = rng.choice(len(COUNTRIES), size=n, p=shares / shares.sum())
    female = rng.random(n) < 0.5
    first = (country * 2 + (~female)) * NAME_POOL_SIZE + rng.integers(0, NAME_POOL_SIZE, n)
    last = country * NAME_POOL_SIZE + rng.integers(0, NAME_POOL_SIZE, n)
    position = (first_row + np.arange(n) + rng.random(n)) / total
    created = np.datetime64(CUSTOMERS_CREATED_FROM, "D") + (position * CUSTOMERS_CREATED_DAYS).astype(np.int64)
    return pl.DataFrame(
        {
            "id": np.arange(FIRST_CUSTOMER_ID + first_row, FIRST_CUSTOMER_ID + first_row + n),
            "country": country,
            "female": female,
            "first": first_pool.gather(first),
            "last": last_pool.gather(last),
            "marital": np.where(rng.random(n) < MARRIED_SHARE, "M", "S"),
            "created": pl.Series(created, dtype=pl.Date),
        }
    )


def customer_key(ids: pl.Expr) -> pl.Expr:
    """AW00011000: the CRM key of a customer id."""
    return pl.format("AW{}", ids.cast(pl.String).str.zfill(8))


def crm_customers(rng: np.random.Generator, customers: pl.DataFrame) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    """cust_info rows as the CRM holds them (stray spaces, blank gender), plus the rows
    chosen to get an older duplicate and the rows to put junk after."""
    n = customers.height
    dirt = pick_rows(rng, n, CUSTOMER_DIRT)
    gender = pl.Series(np.where(customers["female"].to_numpy(), "F", "M"))
    first, last = customers["first"], customers["last"]
    first = pad(rng, pad(rng, first, dirt["first_lead_space"], "lead"), dirt["first_trail_space"], "trail")
    last = pad(rng, pad(rng, last, dirt["last_lead_space"], "lead"), dirt["last_trail_space"], "trail")
    frame = pl.DataFrame(
        {
            "cst_id": customers["id"],
            "cst_key": customers.select(customer_key(pl.col("id"))).to_series(),
            "cst_firstname": first,
            "cst_lastname": last,
            "cst_marital_status": set_at(customers["marital"], dirt["marital_blank"], None),
            "cst_gndr": set_at(gender, np.flatnonzero(rng.random(n) < CRM_GENDER_BLANK), None),
            "cst_create_date": customers["created"],
        }
    )
    return frame, dirt["duplicate_id"], dirt["junk_row"]


def partial_rows(rng: np.random.Generator, complete: pl.DataFrame) -> pl.DataFrame:
    """Older, half-filled copies of some customers, created a day or two before the full row."""
    older = rng.integers(1, 3, complete.height)
    rows = complete.gather(np.repeat(np.arange(complete.height), older))
    age = np.concatenate([np.arange(k, 0, -1) for k in older]) if len(older) else np.array([], int)
    blanks = rng.random((rows.height, 4)) < 0.6
    blanks[~blanks.any(axis=1), 0] = True  # partial means at least one field is missing
    fields = ["cst_firstname", "cst_lastname", "cst_marital_status", "cst_gndr"]
    return rows.with_columns(
        *[pl.when(pl.lit(pl.Series(blanks[:, i]))).then(None).otherwise(f).alias(f) for i, f in enumerate(fields)],
        (pl.col("cst_create_date") - pl.duration(days=pl.lit(pl.Series(age)))).alias("cst_create_date"),
    )


def junk_keys(rng: np.random.Generator, n: int) -> list[str]:
    """Keys that are not customer keys at all (SF566, 1345123, A01Ass...)."""
    alphabet = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"))
    return ["".join(rng.choice(alphabet, size=rng.integers(4, 9))) for _ in range(n)]


def cust_info_frame(rng: np.random.Generator, customers: pl.DataFrame) -> pl.DataFrame:
    """cust_info: CRM customers plus older partial duplicates and junk rows, in file order."""
    crm, duplicate_rows, junk_rows = crm_customers(rng, customers)
    crm = crm.with_columns(pl.int_range(pl.len()).cast(pl.Float64).alias("_order"))
    older = partial_rows(rng, crm.gather(np.sort(duplicate_rows)))
    older = older.with_columns(pl.col("_order") - 0.5 + pl.int_range(pl.len()).over("cst_id") * 0.01)
    junk = pl.DataFrame(
        {"cst_key": junk_keys(rng, len(junk_rows)), "_order": np.sort(junk_rows) + 0.2},
    )
    frame = pl.concat([crm, older, junk], how="diagonal_relaxed").sort("_order")
    return frame.select(crm.columns[:-1])


def cust_az12_frame(rng: np.random.Generator, customers: pl.DataFrame) -> pl.DataFrame:
    """CUST_AZ12: ERP birthdates and genders, keyed partly with a NAS prefix."""
    n = customers.height
    dirt = pick_rows(rng, n, ERP_GENDER_DIRT)
    female = customers["female"].to_numpy()
    births = random_days(rng, BIRTHS_FROM, BIRTHS_TO, n)
    future = dirt["future_birthdate"]
    births[future] = random_days(rng, date(2030, 1, 1), date(2090, 12, 31), len(future))
    births[future[: len(future) // 4]] = random_days(rng, date(9999, 1, 1), date(9999, 12, 31), len(future) // 4)
    gender = pl.Series(np.where(female, "Female", "Male"))
    short, spaced = dirt["gender_short"], dirt["gender_trailing_space"]
    gender = set_at(gender, short, pl.Series(np.where(female[short], "F", "M")))
    gender = set_at(gender, spaced, pl.Series(np.where(female[spaced], "F ", "M ")))
    gender = set_at(gender, dirt["gender_whitespace"], spaces(rng, len(dirt["gender_whitespace"])))
    gender = set_at(gender, dirt["gender_blank"], None)
    nas = rng.random(n) < ERP_NAS_PREFIX
    key = customer_key(pl.col("id"))
    cid = customers.select(pl.when(pl.lit(pl.Series(nas))).then(pl.format("NAS{}", key)).otherwise(key))
    return pl.DataFrame(
        {
            "CID": cid.to_series(),
            "BDATE": pl.Series(births, dtype=pl.Date),
            "GEN": gender,
        }
    )


def country_names(rng: np.random.Generator, country: np.ndarray) -> pl.Series:
    """How the ERP spells each customer's country, with its mixed spellings (USA, US, DE)."""
    names = np.empty(len(country), dtype=object)
    for i, c in enumerate(COUNTRIES):
        rows = np.flatnonzero(country == i)
        spelled, shares = zip(*c.spellings)
        names[rows] = np.array(spelled, dtype=object)[rng.choice(len(spelled), len(rows), p=shares)]
    return pl.Series(names.tolist(), dtype=pl.String)


def loc_a101_frame(rng: np.random.Generator, customers: pl.DataFrame) -> pl.DataFrame:
    """LOC_A101: ERP country per customer, ids with a dash, blanks and stray spaces."""
    dirt = pick_rows(rng, customers.height, LOCATION_DIRT)
    names = country_names(rng, customers["country"].to_numpy())
    names = set_at(names, dirt["country_whitespace"], spaces(rng, len(dirt["country_whitespace"])))
    names = pad(rng, names, dirt["country_padded"], "lead" if rng.random() < 0.5 else "trail")
    names = set_at(names, dirt["country_blank"], None)
    ids = customers["id"].cast(pl.String).str.zfill(8)
    return pl.DataFrame({"CID": "AW-" + ids, "CNTRY": names})


# --- sales --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SalesContext:
    """What every chunk of sales needs: the products on sale and the customers buying."""

    numbers: pl.Series  # product numbers (prd_key from char 7)
    prices: np.ndarray
    appeal: np.ndarray  # probability of each product on a line
    n_customers: int
    n_orders: int


def sales_context(products: pl.DataFrame, n_customers: int, scale: float, rng: np.random.Generator) -> SalesContext:
    """Product popularity and the number of orders that give about 60,400 lines per unit scale."""
    appeal = rng.gamma(0.6, size=products.height) * products["group"].replace_strict(SALES_APPEAL).to_numpy()
    mean_lines = float(np.dot(np.arange(1, len(LINES_PER_ORDER) + 1), LINES_PER_ORDER))
    n_orders = max(1, round(BASE_SALES_LINES * scale / mean_lines))
    return SalesContext(products["number"], products["price"].to_numpy(), appeal / appeal.sum(), n_customers, n_orders)


def order_days(positions: np.ndarray, n_orders: int) -> np.ndarray:
    """Order dates for order positions 0..n-1, non-decreasing, with volume growing exponentially.

    The inverse CDF of an exponential growth curve, so a chunk needs only its positions."""
    span = (ORDERS_TO - ORDERS_FROM).days
    u = positions / n_orders
    offset = ORDER_GROWTH_DAYS * np.log1p(u * np.expm1(span / ORDER_GROWTH_DAYS))
    return np.datetime64(ORDERS_FROM, "D") + np.floor(offset).astype(np.int64)


def distinct_products(rng: np.random.Generator, order: np.ndarray, appeal: np.ndarray) -> np.ndarray:
    """A product per line, redrawn while it repeats within its order: (order, product) is unique."""
    products = rng.choice(len(appeal), size=len(order), p=appeal)
    while True:
        _, first = np.unique(order * len(appeal) + products, return_index=True)
        repeated = np.ones(len(order), dtype=bool)
        repeated[first] = False
        if not repeated.any():
            return products
        products[repeated] = rng.choice(len(appeal), size=int(repeated.sum()), p=appeal)


def amounts(rng: np.random.Generator, price: np.ndarray) -> tuple[pl.Series, pl.Series, pl.Series]:
    """sls_sales, sls_quantity, sls_price with the source's dirt.

    Where the price is blank or negative the sales amount is right, so price = sales / quantity;
    where the sales amount is wrong the price is right, so sales = quantity x price."""
    n = len(price)
    quantity = np.ones(n, dtype=np.int64)
    multi = pick_rows(rng, n, {"multi": MULTI_QUANTITY})["multi"]
    quantity[multi] = rng.integers(2, 11, len(multi))
    dirt = pick_rows(rng, n, SALES_DIRT)
    bad_price = np.concatenate([dirt["price_empty"], dirt["price_negative"]])
    quantity[bad_price] = rng.integers(1, 4, len(bad_price))
    sales = quantity * price
    mismatch = dirt["sales_mismatch"]
    wrong = rng.integers(1, 2 * sales[mismatch] + 1)
    sales[mismatch] = np.where(wrong == sales[mismatch], wrong + 1, wrong)
    sales[dirt["sales_zero"]] = 0
    sales[dirt["sales_negative"]] *= -1
    shown_price = price.copy()
    shown_price[dirt["price_negative"]] *= -1
    return (
        set_at(pl.Series(sales), dirt["sales_empty"], None),
        pl.Series(quantity),
        set_at(pl.Series(shown_price), dirt["price_empty"], None),
    )


def broken_order_dates(rng: np.random.Generator, order_dt: np.ndarray) -> np.ndarray:
    """Order dates as exported: a few are 0 or have too few digits."""
    dirt = pick_rows(rng, len(order_dt), ORDER_DATE_DIRT)
    out = order_dt.copy()
    out[dirt["order_date_zero"]] = 0
    out[dirt["order_date_short"]] = rng.integers(1_000, 100_000, len(dirt["order_date_short"]))
    return out


def sales_chunk(
    rng: np.random.Generator, ctx: SalesContext, first: int, count: int, number: int
) -> tuple[pl.DataFrame, int]:
    """sales_details lines for orders first..first+count-1; order numbers start at `number`.

    Returns the lines and the next free order number (numbers rise with date, with gaps)."""
    positions = first + np.arange(count) + rng.random(count)
    days = order_days(positions, ctx.n_orders)
    numbers = number + np.cumsum(1 + (rng.random(count) < 0.12)) - 1
    customers = FIRST_CUSTOMER_ID + rng.integers(0, ctx.n_customers, count)
    lines = rng.choice(len(LINES_PER_ORDER), size=count, p=LINES_PER_ORDER) + 1
    order = np.repeat(np.arange(count), lines)
    products = distinct_products(rng, order, ctx.appeal)
    line_days = days[order]
    sales, quantity, price = amounts(rng, ctx.prices[products])
    frame = pl.DataFrame(
        {
            "sls_ord_num": numbers[order],
            "sls_prd_key": ctx.numbers.gather(products),
            "sls_cust_id": customers[order],
            "sls_order_dt": broken_order_dates(rng, yyyymmdd(line_days)),
            "sls_ship_dt": yyyymmdd(line_days + SHIP_AFTER_DAYS),
            "sls_due_dt": yyyymmdd(line_days + DUE_AFTER_DAYS),
            "sls_sales": sales,
            "sls_quantity": quantity,
            "sls_price": price,
        }
    )
    frame = frame.with_columns(pl.format("SO{}", pl.col("sls_ord_num")).alias("sls_ord_num"))
    return frame, int(numbers[-1]) + 1


def write_sales(path: Path, rng: np.random.Generator, ctx: SalesContext) -> int:
    """Write sales_details chunk by chunk, so memory stays flat whatever the scale."""
    starts = range(0, ctx.n_orders, ORDERS_PER_CHUNK)
    number, written = FIRST_ORDER_NUMBER, 0
    with path.open("wb") as out:
        for chunk_rng, first in zip(rng.spawn(len(starts)), starts):
            count = min(ORDERS_PER_CHUNK, ctx.n_orders - first)
            frame, number = sales_chunk(chunk_rng, ctx, first, count, number)
            written += append_csv(frame, out, header=first == 0)
    return written


# --- files --------------------------------------------------------------------------------


def append_csv(frame: pl.DataFrame, out: BinaryIO, header: bool) -> int:
    """Write rows as the sources do (CRLF, blanks for nulls, quotes only where needed)."""
    frame.write_csv(out, include_header=header, line_terminator="\r\n")
    return frame.height


def write_csv(frame: pl.DataFrame, path: Path) -> int:
    """A whole small file in one go."""
    with path.open("wb") as out:
        return append_csv(frame, out, header=True)


def write_customers(out_dir: Path, rng: np.random.Generator, n: int) -> dict[str, int]:
    """cust_info, CUST_AZ12 and LOC_A101 chunk by chunk; all three describe the same people."""
    pools = name_pools(rng)
    makers = {CUST_INFO: cust_info_frame, CUST_AZ12: cust_az12_frame, LOC_A101: loc_a101_frame}
    counts = dict.fromkeys(makers, 0)
    starts = range(0, n, CUSTOMERS_PER_CHUNK)
    with ExitStack() as stack:
        files = {path: stack.enter_context((out_dir / path).open("wb")) for path in makers}
        for chunk_rng, first in zip(rng.spawn(len(starts)), starts):
            customers = draw_customers(chunk_rng, pools, first, min(CUSTOMERS_PER_CHUNK, n - first), n)
            for path, make in makers.items():
                counts[path] += append_csv(make(chunk_rng, customers), files[path], header=first == 0)
    return counts


def generate_datasets(out_dir: Path, scale: float = 1.0, seed: int = 42) -> dict[str, int]:
    """Write the six source CSVs under out_dir; return data rows per relative path."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    out_dir = Path(out_dir)
    for folder in ("source_crm", "source_erp"):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    catalog_rng, customer_rng, sales_rng = np.random.default_rng(seed).spawn(3)
    n_customers = max(1, round(BASE_CUSTOMERS * scale))

    products = catalog_products(catalog_rng)
    counts = write_customers(out_dir, customer_rng, n_customers)
    counts[PRD_INFO] = write_csv(prd_info_frame(catalog_rng, products), out_dir / PRD_INFO)
    counts[PX_CAT_G1V2] = write_csv(categories_frame(), out_dir / PX_CAT_G1V2)
    ctx = sales_context(products, n_customers, scale, sales_rng)
    counts[SALES_DETAILS] = write_sales(out_dir / SALES_DETAILS, sales_rng, ctx)
    return {path: counts[path] for path in FILES}


def main(argv: list[str] | None = None) -> None:
    """Command line: python -m logistics_pipeline.datasets.generate --out DIR --scale 1 --seed 42."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("datasets"), help="folder for source_crm/ and source_erp/")
    parser.add_argument("--scale", type=float, default=1.0, help="1 is about 18,500 customers and 60,400 sales lines")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    for path, rows in generate_datasets(args.out, args.scale, args.seed).items():
        print(f"{rows:>12,}  {args.out / path}")


if __name__ == "__main__":
    main()
