"""The source contract: which CSV exports exist, where, and with which columns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

KAFKA_ORDERS = "kafka_orders"
"""The bronze table of the order stream (one row per message)."""
STREAM_ORDERS = "stream_orders"
"""The silver table of the order stream (the current state of every streamed order)."""
LANDING_ORDERS = "landing/orders"
"""The lake's folder of order files (JSON lines) when no Kafka is configured."""

INPUT_KEY = "logistics.input"
"""Commit metadata of every table the pipeline writes: the state of the input it was built from."""
COUNTS_KEY = "logistics.counts"
"""Silver commit metadata: the table's counts, for a run that skips the rebuild."""
MERGES_KEY = "logistics.merges"
"""Silver stream_orders commit metadata: how its merged lines were merged."""

BRONZE_ERROR = "_bronze_error"
"""The bronze column that says what is wrong with a row bronze could not read as a record (null: nothing)."""


@dataclass(frozen=True)
class SourceFile:
    """One CSV export and the bronze table it lands in."""

    table: str
    relative_path: str
    columns: tuple[str, ...]

    def path(self, source_dir: Path) -> Path:
        return source_dir / self.relative_path

    @property
    def system(self) -> str:
        return self.relative_path.split("/")[0].removeprefix("source_")


SOURCES: tuple[SourceFile, ...] = (
    SourceFile(
        "crm_cust_info",
        "source_crm/cust_info.csv",
        ("cst_id", "cst_key", "cst_firstname", "cst_lastname", "cst_marital_status", "cst_gndr", "cst_create_date"),
    ),
    SourceFile(
        "crm_prd_info",
        "source_crm/prd_info.csv",
        ("prd_id", "prd_key", "prd_nm", "prd_cost", "prd_line", "prd_start_dt", "prd_end_dt"),
    ),
    SourceFile(
        "crm_sales_details",
        "source_crm/sales_details.csv",
        (
            "sls_ord_num", "sls_prd_key", "sls_cust_id", "sls_order_dt", "sls_ship_dt",
            "sls_due_dt", "sls_sales", "sls_quantity", "sls_price",
        ),
    ),
    SourceFile("erp_cust_az12", "source_erp/CUST_AZ12.csv", ("CID", "BDATE", "GEN")),
    SourceFile("erp_loc_a101", "source_erp/LOC_A101.csv", ("CID", "CNTRY")),
    SourceFile("erp_px_cat_g1v2", "source_erp/PX_CAT_G1V2.csv", ("ID", "CAT", "SUBCAT", "MAINTENANCE")),
)

SOURCES_BY_TABLE = {source.table: source for source in SOURCES}
