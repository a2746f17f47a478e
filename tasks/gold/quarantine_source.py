"""A dbt-duckdb source plugin for the quarantine tables (profiles.yml: ``plugins:`` of the local
target, alias ``quarantine``), so that gold.duckdb holds them and a SQL user can join them.

It reads a Delta table as the ``lake`` plugin does (``tasks.gold.lake_source``). The difference:
a quarantine table silver has not written yet (the stream's, before any order arrived) loads as
the empty table it stands for, since no row was rejected, instead of failing the gold build
(built in SQL from its schema, like an empty lake table: ``lake_views.empty_query``; an
empty pyarrow table would import pandas, 0.35 s of a small gold build).
"""

from __future__ import annotations

from typing import Any

from dbt.adapters.duckdb.utils import SourceConfig
from deltalake import Schema

from logistics_pipeline.tasks.gold import lake_source
from logistics_pipeline.tasks.gold.lake_views import empty_query
from logistics_pipeline.tasks.local.quarantine import empty_quarantine, quarantine_schema


class Plugin(lake_source.Plugin):
    def missing_table(self, source_config: SourceConfig) -> Any:
        cursor = getattr(self._cursor, "current", None)
        query = None if cursor is None else empty_query(Schema.from_arrow(quarantine_schema(source_config.name)))
        return empty_quarantine(source_config.name) if query is None else cursor.sql(query)
