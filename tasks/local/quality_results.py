"""The lake's quality results (``tasks.core.quality_log``), read back for ``logistics-pipeline quality``."""

from __future__ import annotations

import polars as pl

from logistics_pipeline.tasks.core.quality_log import QUALITY_LAYER, QUALITY_TABLE
from logistics_pipeline.tasks.errors import PipelineError
from logistics_pipeline.tasks.local.lake import Lake, read_table, table_exists


def read_quality_results(lake_: Lake) -> pl.DataFrame:
    """Every run's rows; one line naming the table when no silver run has recorded any."""
    uri = lake_.uri(QUALITY_LAYER, QUALITY_TABLE)
    if not table_exists(uri):
        raise PipelineError(f"no quality results in {uri}: run the silver layer first")
    return read_table(uri)
