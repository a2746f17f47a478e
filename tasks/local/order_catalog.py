"""What synthetic orders may refer to, read from the lake: silver customers and current
products, or the CRM CSVs while silver is not built yet."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from logistics_pipeline.tasks.core.orders import ReferenceData, reference_from
from logistics_pipeline.tasks.local.lake import Lake, read_table, table_exists
from logistics_pipeline.tasks.settings import DEFAULT_SOURCE_DIR


def reference_data(lake_root: str, source_dir: Path = DEFAULT_SOURCE_DIR) -> ReferenceData:
    """Customers and current products from silver; from the CRM CSVs while silver is not built yet."""
    lake = Lake(lake_root)
    customers_uri, products_uri = lake.uri("silver", "crm_cust_info"), lake.uri("silver", "crm_prd_info")
    if table_exists(customers_uri) and table_exists(products_uri):
        customers = read_table(customers_uri, columns=["cst_id"])["cst_id"]
        products = (
            read_table(products_uri, columns=["prd_key", "prd_cost", "prd_end_dt"])
            .filter(pl.col("prd_end_dt").is_null())
            .select(number=pl.col("prd_key"), cost=pl.col("prd_cost"))
        )
        source = "silver"
    else:
        crm = Path(source_dir) / "source_crm"
        customers = pl.read_csv(crm / "cust_info.csv", columns=["cst_id"], infer_schema=False)["cst_id"]
        customers = customers.str.strip_chars().cast(pl.Int64, strict=False)
        products = (
            pl.read_csv(crm / "prd_info.csv", columns=["prd_key", "prd_cost", "prd_start_dt"], infer_schema=False)
            .select(
                number=pl.col("prd_key").str.strip_chars().str.slice(6),
                cost=pl.col("prd_cost").str.strip_chars().cast(pl.Float64, strict=False),
                start=pl.col("prd_start_dt").str.strip_chars(),
            )
            .sort("start", nulls_last=False)
            .unique("number", keep="last", maintain_order=True)  # the latest version is the current one
        )
        source = "csv"
    return reference_from(customers, products, source, f"{source} under {lake_root if source == 'silver' else source_dir}")
