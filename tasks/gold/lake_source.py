"""A dbt-duckdb source plugin that copies a lake Delta table into gold.duckdb with DuckDB's own
Parquet reader (profiles.yml: ``plugins:`` of the local target, alias ``lake``).

The pipeline's dbt commands read the lake through views instead (``tasks.gold.lake_views``),
and the sources' ``save_mode: ignore`` makes this plugin skip a table that has one: it copies
what has none, a table the views cannot read, or every table in a hand-run ``dbt build``.

dbt-duckdb's ``delta`` plugin hands DuckDB a pyarrow dataset. Copying silver
``crm_sales_details`` at scale 300 (18 M lines) that way peaked at 2.2 GB, beyond the gold
build's ``memory_limit``, since DuckDB's Arrow ingest and pyarrow's read-ahead are not under it.
Read as Parquet, the same copy peaked at 0.7 GB and took 5.8 s instead of 8.1 s. A table that
DuckDB's Parquet reader cannot read as a whole (``lake_views.parquet_files``) is read the
``delta`` plugin's way. DuckDB's ``delta_scan`` is no alternative: it downloads an extension,
which fails offline.
"""

from __future__ import annotations

import threading
from typing import Any

from dbt.adapters.duckdb.plugins import BasePlugin
from dbt.adapters.duckdb.utils import SourceConfig

from logistics_pipeline.tasks.gold.lake_views import parquet_query
from logistics_pipeline.tasks.local.lake import Lake, open_table


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        # The lake comes from the profile (its ``config``), not from the sources: a source names
        # only its layer (its schema) and table, so the parsed project holds no lake.
        if not plugin_config.get("lake"):
            raise ValueError(f"the {self.name!r} plugin needs the lake: config: {{lake: ...}} in profiles.yml")
        self._lake = Lake(plugin_config["lake"])
        self._cursor = threading.local()

    def configure_cursor(self, cursor: Any) -> None:
        # dbt-duckdb configures a new cursor, then loads a source through it in the same thread:
        # the relation ``load`` returns must belong to that cursor's connection.
        self._cursor.current = cursor

    def load(self, source_config: SourceConfig) -> Any:
        uri = self.uri(source_config)
        table = open_table(uri)
        if table is None:
            return self.missing_table(source_config)
        as_table = source_config.get("materialization", self.default_materialization()) == "table"
        cursor = getattr(self._cursor, "current", None)
        query = parquet_query(cursor, uri, table) if cursor is not None and as_table else None
        return table.to_pyarrow_dataset() if query is None else cursor.sql(query)

    def uri(self, source_config: SourceConfig) -> str:
        """Where the source's Delta table is: ``<lake>/<schema>/<table>`` (``silver``, ``history``,
        ``quality``, ``quarantine``: a source's schema in gold.duckdb is its layer of the lake)."""
        return self._lake.uri(source_config.schema, source_config.name)

    def missing_table(self, source_config: SourceConfig) -> Any:
        """A source table that does not exist: an error naming it (the quarantine plugin loads it empty)."""
        raise FileNotFoundError(f"lake table {self.uri(source_config)} does not exist: run the silver layer first")

    def default_materialization(self) -> str:
        return "table"
