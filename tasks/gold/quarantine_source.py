"""A dbt-duckdb source plugin for the quarantine tables (profiles.yml: ``plugins:`` of the local
target, alias ``quarantine``), so that gold.duckdb holds them and a SQL user can join them.

It reads a Delta table as dbt-duckdb's own ``delta`` plugin does. The difference: a quarantine
table silver has not written yet (the stream's, before any order arrived) loads as the empty
table it stands for, since no row was rejected, instead of failing the gold build. DuckDB's
``delta_scan`` is no alternative: it downloads an extension, which fails offline.
"""

from __future__ import annotations

from typing import Any

from dbt.adapters.duckdb.plugins import BasePlugin
from dbt.adapters.duckdb.utils import SourceConfig

from logistics_pipeline.tasks.local.lake import open_table
from logistics_pipeline.tasks.local.quarantine import empty_quarantine


class Plugin(BasePlugin):
    def load(self, source_config: SourceConfig) -> Any:
        table = open_table(source_config["delta_table_path"])
        if table is None:
            return empty_quarantine(source_config.name)
        return table.to_pyarrow_dataset()

    def default_materialization(self) -> str:
        return "table"
