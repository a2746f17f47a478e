"""The local engine's bronze and silver tables of the CSV exports, built by plain function
calls (no flow, no Prefect server): what the Spark tests compare against or build on."""

from __future__ import annotations

from pathlib import Path

from logistics_pipeline.tasks.core.contract import SOURCES
from logistics_pipeline.tasks.core.csv_source import fingerprint_csv
from logistics_pipeline.tasks.core.runner import run_silver_table
from logistics_pipeline.tasks.core.silver import SILVER_TABLES
from logistics_pipeline.tasks.local.bronze import ingest_csv
from logistics_pipeline.tasks.local.lake import Lake
from logistics_pipeline.tasks.local.store import DeltaStore


def build_local_layers(sources: Path, lake: Lake) -> None:
    """Bronze for every source file, then every silver table (not the stream)."""
    for source in SOURCES:
        path = source.path(sources)
        ingest_csv(path, source, lake.uri("bronze", source.table), fingerprint_csv(path, source))
    for table in SILVER_TABLES:
        run_silver_table(DeltaStore(lake), table)
