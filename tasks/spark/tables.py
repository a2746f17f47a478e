"""Where the Spark entrypoint's Delta tables live, and how it reads and writes them.

A table is a Unity Catalog name (``catalog.schema.[prefix]layer_table``) or, without a
metastore, a path (``PATH/<layer>/<table>``, the local engine's layout). Every full rebuild is
one overwrite commit that records its input (``userMetadata``), so a rerun on unchanged input
can be recognised from the Delta log alone; the stream appends idempotently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.pandas.types import from_arrow_schema

from logistics_pipeline.tasks.core.contract import INPUT_KEY


def table_name(layer: str, table: str, catalog: str, schema: str, prefix: str = "") -> str:
    """The Unity Catalog name of a layer's table: ``catalog.schema.[prefix]layer_table``."""
    return f"{catalog}.{schema}.{prefix}{layer}_{table}"


def arrow_frame(spark: SparkSession, table: pa.Table) -> DataFrame:
    """``table`` as a DataFrame, its schema given rather than inferred: Spark Connect cannot infer
    one from an empty table (``CANNOT_INFER_EMPTY_SCHEMA``); classic Spark derives this same one."""
    return spark.createDataFrame(table, schema=from_arrow_schema(table.schema))


def _quote(name: str) -> str:
    return ".".join(f"`{part.replace('`', '``')}`" for part in name.split("."))


@dataclass(frozen=True)
class TableCommit:
    """A table's latest Delta commit: its version, what it recorded, and how many rows it wrote."""

    version: int
    metadata: dict[str, Any]
    rows_written: int | None
    timestamp: str = ""

    @property
    def input(self) -> str | None:
        return self.metadata.get(INPUT_KEY)


@dataclass(frozen=True)
class Target:
    """One Delta table: a catalog table (``name``) or, without a metastore, a ``path``."""

    name: str | None = None
    path: str | None = None

    @property
    def sql(self) -> str:
        return _quote(self.name) if self.name else f"delta.`{self.path}`"

    def __str__(self) -> str:
        return self.name or str(self.path)

    def last_commit(self, spark: SparkSession) -> TableCommit | None:
        """The latest commit (from the Delta log, no data scan), or None when there is no table.

        This job replaces a table whole in one commit, so such a commit's ``numOutputRows`` is
        the table's row count: much cheaper than counting it again. Other commits (a user's,
        OPTIMIZE) report none, and the table is counted instead."""
        if self.name and not spark.catalog.tableExists(self.name):
            return None
        try:
            row = spark.sql(f"DESCRIBE HISTORY {self.sql} LIMIT 1").first()
        except AnalysisException:
            return None
        if row is None:
            return None
        metadata = _json_object(row["userMetadata"])
        written = (row["operationMetrics"] or {}).get("numOutputRows") if INPUT_KEY in metadata else None
        return TableCommit(int(row["version"]), metadata, None if written is None else int(written), str(row["timestamp"]))

    def state(self, commit: TableCommit) -> str:
        """What a table downstream is built from: the version and the commit's time, so a table
        reset by hand or recreated at a version number seen before is not taken for the one
        recorded (as ``tasks.local.lake.table_state``)."""
        return f"{self}@v{commit.version}:{commit.timestamp}"

    def rows(self, spark: SparkSession) -> int:
        """Rows in the table, from its last full-replace commit when recorded."""
        commit = self.last_commit(spark)
        if commit is not None and commit.rows_written is not None:
            return commit.rows_written
        return self.read(spark).count()

    def read(self, spark: SparkSession, version: int | None = None) -> DataFrame:
        return spark.sql(f"SELECT * FROM {self.sql}" + ("" if version is None else f" VERSION AS OF {version}"))

    def overwrite(self, frame: DataFrame, metadata: dict[str, Any]) -> None:
        """Replace content and schema in one Delta commit that records ``metadata``."""
        writer = (
            frame.write.format("delta").mode("overwrite")
            .option("overwriteSchema", "true")
            .option("userMetadata", json.dumps(metadata, sort_keys=True))
        )
        self._save(writer)

    def append(self, frame: DataFrame, app_id: str, version: int) -> None:
        """Append in one Delta commit, which Delta skips when this application (``txnAppId``)
        has already committed this ``txnVersion`` or a later one: a replayed batch writes nothing."""
        self._save(frame.write.format("delta").mode("append").option("txnAppId", app_id).option("txnVersion", version))

    def _save(self, writer: Any) -> None:
        if self.name:
            writer.saveAsTable(self.name)
        else:
            writer.save(self.path)


def _json_object(text: str | None) -> dict[str, Any]:
    """A commit's userMetadata as ours (a JSON object); anything else recorded there is ignored."""
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class Lakehouse:
    """Unity Catalog (``catalog.schema``) or, for local runs, a folder of path-based Delta tables."""

    catalog: str | None = None
    schema: str | None = None
    prefix: str = ""
    lake: str | None = None

    def target(self, layer: str, table: str) -> Target:
        if self.lake:
            return Target(path=f"{self.lake.rstrip('/')}/{layer}/{self.prefix}{table}")
        assert self.catalog and self.schema
        return Target(name=table_name(layer, table, self.catalog, self.schema, self.prefix))
