"""The generated CRM/ERP files look like the reference export, dirt included, and are reproducible."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from logistics_pipeline.datasets.generate import FILES, generate_datasets, main

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "datasets"
REFERENCE = ROOT.parent / "shared" / "reference-data" / "datasets"

HEADERS = {
    "source_crm/cust_info.csv": "cst_id,cst_key,cst_firstname,cst_lastname,cst_marital_status,cst_gndr,cst_create_date",
    "source_crm/prd_info.csv": "prd_id,prd_key,prd_nm,prd_cost,prd_line,prd_start_dt,prd_end_dt",
    "source_crm/sales_details.csv": (
        "sls_ord_num,sls_prd_key,sls_cust_id,sls_order_dt,sls_ship_dt,sls_due_dt,sls_sales,sls_quantity,sls_price"
    ),
    "source_erp/CUST_AZ12.csv": "CID,BDATE,GEN",
    "source_erp/LOC_A101.csv": "CID,CNTRY",
    "source_erp/PX_CAT_G1V2.csv": "ID,CAT,SUBCAT,MAINTENANCE",
}
# Data rows in the reference export (see ../shared/reference-data/README.md).
REFERENCE_ROWS = {
    "source_crm/cust_info.csv": 18_493,
    "source_crm/prd_info.csv": 397,
    "source_crm/sales_details.csv": 60_398,
    "source_erp/CUST_AZ12.csv": 18_484,
    "source_erp/LOC_A101.csv": 18_484,
    "source_erp/PX_CAT_G1V2.csv": 37,
}


def read(folder: Path, name: str) -> pl.DataFrame:
    """A file as text columns, blanks as null, whitespace kept: as the pipeline's bronze sees it."""
    return pl.read_csv(folder / name, infer_schema=False)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """The default-sized set (scale 0.1, seed 42), generated once for the module, and the rows
    generate_datasets reported."""
    out = tmp_path_factory.mktemp("scale_0_1")
    return out, generate_datasets(out, scale=0.1, seed=42)


@pytest.fixture(scope="module")
def small(generated: tuple[Path, dict[str, int]]) -> Path:
    return generated[0]


@pytest.fixture(scope="module")
def customers(small: Path) -> pl.DataFrame:
    return read(small, "source_crm/cust_info.csv")


@pytest.fixture(scope="module")
def products(small: Path) -> pl.DataFrame:
    return read(small, "source_crm/prd_info.csv")


@pytest.fixture(scope="module")
def sales(small: Path) -> pl.DataFrame:
    return read(small, "source_crm/sales_details.csv").with_columns(
        pl.col("sls_sales", "sls_quantity", "sls_price").cast(pl.Int64)
    )


# --- layout -------------------------------------------------------------------------------


def test_writes_the_six_files_and_reports_their_rows(generated: tuple[Path, dict[str, int]]) -> None:
    folder, counts = generated
    assert list(counts) == list(FILES) == list(HEADERS)
    for name, rows in counts.items():
        assert read(folder, name).height == rows


@pytest.mark.parametrize("name", list(HEADERS))
def test_header_is_the_reference_header(small: Path, name: str) -> None:
    first_line = (small / name).read_bytes().split(b"\r\n", 1)[0].decode()
    assert first_line == HEADERS[name]
    if REFERENCE.exists():
        reference_line = (REFERENCE / name).read_bytes().split(b"\r\n", 1)[0].decode()
        assert first_line == reference_line


@pytest.mark.parametrize("name", list(HEADERS))
def test_lines_end_in_crlf_utf8_without_bom(small: Path, name: str) -> None:
    data = (small / name).read_bytes()
    assert not data.startswith(b"\xef\xbb\xbf")
    data.decode("utf-8")
    assert data.endswith(b"\r\n")
    assert data.count(b"\n") == data.count(b"\r\n")


def test_quotes_only_fields_with_a_comma(products: pl.DataFrame, small: Path) -> None:
    with_comma = products.filter(pl.col("prd_nm").str.contains(","))
    assert with_comma.height >= 3
    text = (small / "source_crm/prd_info.csv").read_text()
    assert text.count('"') == 2 * with_comma.height


def test_sizes_at_scale_1_are_within_10_percent_of_the_reference(tmp_path: Path) -> None:
    counts = generate_datasets(tmp_path, scale=1, seed=7)
    for name, reference in REFERENCE_ROWS.items():
        assert abs(counts[name] - reference) <= 0.1 * reference, name


def test_catalog_does_not_scale_but_customers_and_sales_do(small: Path, tmp_path: Path) -> None:
    tiny = generate_datasets(tmp_path, scale=0.01, seed=42)
    assert tiny["source_crm/prd_info.csv"] == read(small, "source_crm/prd_info.csv").height
    assert tiny["source_erp/PX_CAT_G1V2.csv"] == 37
    assert tiny["source_erp/CUST_AZ12.csv"] == 185
    assert 500 < tiny["source_crm/sales_details.csv"] < 700


def test_cli_writes_and_prints_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["--out", str(tmp_path), "--scale", "0.01", "--seed", "3"])
    printed = capsys.readouterr().out
    assert "cust_info.csv" in printed and "sales_details.csv" in printed
    assert (tmp_path / "source_erp/LOC_A101.csv").exists()


def test_rejects_a_scale_that_is_not_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate_datasets(tmp_path, scale=0)


# --- determinism --------------------------------------------------------------------------


def files_bytes(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in HEADERS}


def test_same_seed_gives_the_same_bytes(tmp_path: Path) -> None:
    generate_datasets(tmp_path / "a", scale=0.05, seed=11)
    generate_datasets(tmp_path / "b", scale=0.05, seed=11)
    assert files_bytes(tmp_path / "a") == files_bytes(tmp_path / "b")


def test_another_seed_gives_other_data(tmp_path: Path) -> None:
    generate_datasets(tmp_path / "a", scale=0.05, seed=11)
    generate_datasets(tmp_path / "b", scale=0.05, seed=12)
    a, b = files_bytes(tmp_path / "a"), files_bytes(tmp_path / "b")
    for name in HEADERS:
        if name != "source_erp/PX_CAT_G1V2.csv":  # the category list is fixed
            assert a[name] != b[name], name


def test_shipped_default_set_is_the_generator_output(small: Path) -> None:
    """datasets/source_* must be regenerated (scale 0.1, seed 42) whenever the generator changes."""
    assert files_bytes(SHIPPED) == files_bytes(small)


# --- integrity ----------------------------------------------------------------------------


def test_every_sale_names_a_known_customer_and_product(
    sales: pl.DataFrame, customers: pl.DataFrame, products: pl.DataFrame
) -> None:
    customer_ids = customers["cst_id"].drop_nulls().unique().implode()
    product_numbers = products["prd_key"].str.slice(6).unique().implode()
    assert sales["sls_cust_id"].is_in(customer_ids).all()
    assert sales["sls_prd_key"].is_in(product_numbers).all()


def test_order_and_product_are_unique(sales: pl.DataFrame) -> None:
    assert sales.select(pl.struct("sls_ord_num", "sls_prd_key").is_unique().all()).item()


def test_order_numbers_rise_with_the_order_date(sales: pl.DataFrame) -> None:
    orders = sales.group_by("sls_ord_num").agg(pl.col("sls_ship_dt").first()).with_columns(
        pl.col("sls_ord_num").str.slice(2).cast(pl.Int64)
    )
    assert sales["sls_ord_num"].str.contains(r"^SO\d{5,}$").all()
    assert orders.sort("sls_ord_num")["sls_ship_dt"].cast(pl.Int64).is_sorted()


def test_ship_and_due_dates_follow_the_order_date(sales: pl.DataFrame) -> None:
    dated = sales.filter(pl.col("sls_order_dt").str.len_chars() == 8).select(
        pl.col("sls_order_dt", "sls_ship_dt", "sls_due_dt").str.to_date("%Y%m%d")
    )
    assert ((dated["sls_ship_dt"] - dated["sls_order_dt"]).dt.total_days() == 7).all()
    assert ((dated["sls_due_dt"] - dated["sls_order_dt"]).dt.total_days() == 12).all()


def test_every_crm_customer_has_erp_rows(small: Path, customers: pl.DataFrame) -> None:
    crm = customers["cst_key"].filter(customers["cst_id"].is_not_null()).unique().sort()
    erp = read(small, "source_erp/CUST_AZ12.csv")["CID"].str.replace("^NAS", "").sort()
    location = read(small, "source_erp/LOC_A101.csv")["CID"].str.replace("-", "").sort()
    assert crm.to_list() == erp.to_list() == location.to_list()
    assert customers["cst_id"].drop_nulls().cast(pl.Int64).min() == 11_000


def test_product_keys_pack_category_and_number(products: pl.DataFrame, small: Path) -> None:
    categories = read(small, "source_erp/PX_CAT_G1V2.csv")["ID"]
    category = products["prd_key"].str.slice(0, 5).str.replace("-", "_")
    known = category.is_in(categories.implode())
    assert known.mean() > 0.95
    assert 1 <= (~known).sum() <= 10  # a few products in a category the ERP lacks
    assert products["prd_key"].str.slice(5, 1).eq("-").all()


def test_catalog_shape(products: pl.DataFrame) -> None:
    versions = products.group_by("prd_key").len()
    assert 280 <= versions.height <= 310
    assert 65 <= (versions["len"] > 1).sum() <= 90


def test_categories_are_clean(small: Path) -> None:
    categories = read(small, "source_erp/PX_CAT_G1V2.csv")
    assert categories.null_count().sum_horizontal().item() == 0
    assert categories["ID"].is_unique().all()
    assert set(categories["CAT"]) == {"Accessories", "Bikes", "Clothing", "Components"}
    assert set(categories["MAINTENANCE"]) == {"Yes", "No"}


# --- dirt (each kind at least once at scale 0.1) ------------------------------------------


def test_customer_junk_rows(customers: pl.DataFrame) -> None:
    junk = customers.filter(pl.col("cst_id").is_null())
    assert junk.height >= 1
    assert not junk["cst_key"].str.starts_with("AW000").any()


def test_customer_duplicates_are_older_partial_rows(customers: pl.DataFrame) -> None:
    duplicated = customers.filter(pl.col("cst_id").is_not_null() & pl.col("cst_id").is_duplicated())
    assert duplicated.height >= 2
    for _, rows in duplicated.group_by("cst_id"):
        rows = rows.sort("cst_create_date")
        assert rows["cst_create_date"].is_unique().all()
        latest, older = rows.tail(1), rows.head(rows.height - 1)
        fields = ["cst_firstname", "cst_lastname", "cst_marital_status", "cst_gndr"]
        assert latest.select("cst_firstname", "cst_lastname").null_count().sum_horizontal().item() == 0
        assert (older.select(fields).null_count().sum_horizontal() > 0).all()


def test_customer_names_with_stray_spaces(customers: pl.DataFrame) -> None:
    for column in ("cst_firstname", "cst_lastname"):
        names = customers[column].drop_nulls()
        assert names.str.starts_with(" ").any(), column
        assert names.str.ends_with(" ").any(), column


def test_customer_codes(customers: pl.DataFrame) -> None:
    real = customers.filter(pl.col("cst_id").is_not_null())
    assert set(real["cst_marital_status"]) == {"M", "S", None}
    assert set(real["cst_gndr"]) == {"M", "F", None}
    assert 0.15 < real["cst_gndr"].is_null().mean() < 0.35
    assert real["cst_create_date"].str.contains(r"^\d{4}-\d{2}-\d{2}$").all()
    assert real["cst_key"].str.contains(r"^AW\d{8}$").all()


def test_product_dirt(products: pl.DataFrame) -> None:
    assert 1 <= products["prd_cost"].null_count() <= 5
    assert 5 <= products["prd_line"].null_count() <= 30
    assert set(products["prd_line"].drop_nulls()) <= {"M ", "R ", "S ", "T "}
    dated = products.with_columns(pl.col("prd_start_dt", "prd_end_dt").str.to_date())
    ended = dated.filter(pl.col("prd_end_dt").is_not_null())
    assert ended.height > 0
    assert (ended["prd_end_dt"] < ended["prd_start_dt"]).all()


def test_product_versions_start_later_and_only_the_latest_is_open(products: pl.DataFrame) -> None:
    for _, versions in products.group_by("prd_key"):
        assert versions["prd_id"].cast(pl.Int64).is_sorted()
        assert versions["prd_start_dt"].is_sorted() and versions["prd_start_dt"].is_unique().all()
        assert versions["prd_end_dt"].is_null().to_list() == [False] * (versions.height - 1) + [True]


def test_sales_date_dirt(sales: pl.DataFrame) -> None:
    order_dt = sales["sls_order_dt"]
    assert (order_dt == "0").any()
    assert ((order_dt != "0") & (order_dt.str.len_chars() != 8)).any()
    assert (sales["sls_ship_dt"].str.len_chars() == 8).all()
    assert (order_dt.str.len_chars() != 8).mean() < 0.002


def test_sales_amount_dirt(sales: pl.DataFrame) -> None:
    s, q, p = pl.col("sls_sales"), pl.col("sls_quantity"), pl.col("sls_price")
    kinds = {
        "sales empty": s.is_null(),
        "sales zero": s == 0,
        "sales negative": s < 0,
        "sales wrong": (s > 0) & (p > 0) & (s != q * p),
        "price empty": p.is_null(),
        "price negative": p < 0,
    }
    counts = sales.select(**{kind: rule.sum() for kind, rule in kinds.items()}).row(0, named=True)
    assert all(count >= 1 for count in counts.values()), counts
    assert sum(counts.values()) < 0.005 * sales.height
    assert (sales["sls_quantity"] == 1).mean() > 0.99
    assert (sales["sls_quantity"] > 1).any()


def test_a_bad_price_can_be_recovered_from_sales(sales: pl.DataFrame) -> None:
    s, q, p = pl.col("sls_sales"), pl.col("sls_quantity"), pl.col("sls_price")
    bad_price = sales.filter(p.is_null() | (p < 0))
    assert (bad_price["sls_sales"] > 0).all()
    assert (bad_price["sls_sales"] % bad_price["sls_quantity"] == 0).all()
    negative = bad_price.filter(p < 0)
    assert negative.select((s == q * p.abs()).all()).item()


def test_erp_customer_dirt(small: Path) -> None:
    erp = read(small, "source_erp/CUST_AZ12.csv")
    nas = erp["CID"].str.starts_with("NAS")
    assert 0.5 < nas.mean() < 0.9
    assert erp["CID"].filter(~nas).str.contains(r"^AW\d{8}$").all()
    assert (erp["BDATE"] > "2026-12-31").any()
    genders = set(erp["GEN"].to_list())
    assert {"Male", "Female", None} <= genders
    assert genders & {"M", "F"}
    assert genders & {"M ", "F "}
    assert any(g is not None and g.strip() == "" for g in genders)


def test_erp_location_dirt(small: Path) -> None:
    countries = read(small, "source_erp/LOC_A101.csv")
    assert countries["CID"].str.contains(r"^AW-\d{8}$").all()
    values = set(countries["CNTRY"].to_list())
    assert {"DE", "US", "USA", None, "Germany", "United States", "Australia", "France", "Canada",
            "United Kingdom"} <= values
    assert any(v is not None and v.strip() == "" for v in values)
    assert any(v is not None and v.strip() and v != v.strip() for v in values)
