"""A dbt-duckdb source plugin for the quarantine tables (profiles.yml: ``plugins:`` of the local
target, alias ``quarantine``), so that gold.duckdb holds them and a SQL user can join them.

It reads a Delta table as the ``lake`` plugin does (``tasks.gold.lake_source``). The difference:
a quarantine table silver has not written yet (the stream's, before any order arrived) loads as
the empty table it stands for, since no row was rejected, instead of failing the gold build.
"""

from __future__ import annotations

from typing import Any

from dbt.adapters.duckdb.utils import SourceConfig

from logistics_pipeline.tasks.gold import lake_source
from logistics_pipeline.tasks.local.quarantine import empty_quarantine


class Plugin(lake_source.Plugin):
    def missing_table(self, source_config: SourceConfig) -> Any:
        return empty_quarantine(source_config.name)
