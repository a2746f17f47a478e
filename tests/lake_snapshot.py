"""Read a whole lake into comparable form: every Delta table and gold table as sorted rows."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
from deltalake import DeltaTable

from logistics_pipeline.tasks.gold.dbt import GOLD_SCHEMA, GOLD_TABLES

LAYERS = ("bronze", "silver", "quarantine")


def delta_tables(lake: Path) -> dict[str, str]:
    """'layer/table' -> uri for every Delta table in the lake."""
    found = {}
    for layer in LAYERS:
        for path in sorted((lake / layer).glob("*")):
            if DeltaTable.is_deltatable(str(path)):
                found[f"{layer}/{path.name}"] = str(path)
    return found


def versions(lake: Path) -> dict[str, int]:
    return {name: DeltaTable(uri).version() for name, uri in delta_tables(lake).items()}


def sorted_rows(frame: pl.DataFrame, drop: tuple[str, ...] = ()) -> list[tuple]:
    frame = frame.drop([c for c in drop if c in frame.columns])
    return sorted(frame.rows(), key=repr)


def snapshot(lake: Path, drop: tuple[str, ...] = ()) -> dict[str, list[tuple]]:
    """Content of every table, order-independent; ``drop`` names volatile columns to ignore."""
    content = {name: sorted_rows(pl.read_delta(uri), drop) for name, uri in delta_tables(lake).items()}
    content.update(gold_snapshot(lake, drop))
    return content


def gold_snapshot(lake: Path, drop: tuple[str, ...] = ()) -> dict[str, list[tuple]]:
    gold = lake / "gold.duckdb"
    if not gold.exists():
        return {}
    with duckdb.connect(str(gold), read_only=True) as connection:
        return {
            f"gold/{table}": sorted_rows(connection.sql(f"select * from {GOLD_SCHEMA}.{table}").pl(), drop)
            for table in GOLD_TABLES
        }


def gold_frame(lake: Path, sql: str) -> pl.DataFrame:
    with duckdb.connect(str(lake / "gold.duckdb"), read_only=True) as connection:
        return connection.sql(sql).pl()
