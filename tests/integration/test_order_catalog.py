"""What synthetic orders refer to, read from silver Delta tables."""

from __future__ import annotations

from datetime import date

import polars as pl

from logistics_pipeline.tasks.local.order_catalog import reference_data


def test_reference_data_reads_current_products_from_silver(tmp_path):
    lake = tmp_path / "lake"
    pl.DataFrame({"cst_id": [11000, 11001, None, 11001]}, schema={"cst_id": pl.Int64}).write_delta(str(lake / "silver" / "crm_cust_info"))
    pl.DataFrame(
        {
            "prd_key": ["BK-R93R-62", "BK-R93R-62", "HL-U509", "OLD-ONLY"],
            "prd_cost": [1000.0, 2000.0, 20.0, 5.0],
            "prd_end_dt": [date(2020, 1, 1), None, None, date(2019, 1, 1)],
        }
    ).write_delta(str(lake / "silver" / "crm_prd_info"))
    reference = reference_data(str(lake))
    assert reference.source == "silver"
    assert reference.customers.tolist() == [11000, 11001]
    assert reference.products == {"BK-R93R-62": 3500.0, "HL-U509": 35.0}  # current versions, cost x 1.75
