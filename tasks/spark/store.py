"""The Spark job's tables for the silver runner (``tasks.core.runner``): Delta tables in Unity
Catalog or under a path, computed on the job's SparkSession (classic or Spark Connect)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import narwhals as nw
import polars as pl
from pyspark.sql import SparkSession
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.types import TimestampNTZType

from logistics_pipeline.tasks.core.contract import INPUT_KEY, STREAM_ORDERS
from logistics_pipeline.tasks.core.runner import Commit
from logistics_pipeline.tasks.core.silver import SilverTable, merged
from logistics_pipeline.tasks.core.stream import COORDINATES, STREAM_ORDERS_SCHEMA
from logistics_pipeline.tasks.spark.stream import PARSED_ARROW, parse_batches
from logistics_pipeline.tasks.spark.tables import Lakehouse, arrow_frame


@dataclass(frozen=True)
class SparkStore:
    """The lakehouse's Delta tables as a ``tasks.core.runner.TableStore``, computed on Spark."""

    spark: SparkSession
    lakehouse: Lakehouse

    def last_commit(self, layer: str, table: str) -> Commit | None:
        target = self.lakehouse.target(layer, table)
        commit = target.last_commit(self.spark)
        return None if commit is None else Commit(commit.version, target.state(commit), commit.metadata)

    def read(self, layer: str, table: str, version: int) -> nw.LazyFrame:
        return nw.from_native(self.lakehouse.target(layer, table).read(self.spark, version))

    def materialize(self, frame: nw.LazyFrame) -> nw.LazyFrame:
        return nw.from_native(frame.to_native().cache())

    def materialize_from(self, shared: nw.LazyFrame, *frames: nw.LazyFrame) -> tuple[nw.LazyFrame, ...]:
        """``shared`` cached first: Spark's cache manager serves it to every frame built on it."""
        self.materialize(shared)
        return tuple(self.materialize(frame) for frame in frames)

    def merge(self, table: SilverTable, cleansed: nw.LazyFrame) -> nw.LazyFrame:
        return self.materialize(merged(table, cleansed))

    def count(self, frame: nw.LazyFrame) -> int:
        return frame.to_native().count()

    def overwrite(self, layer: str, table: str, frame: nw.LazyFrame, metadata: dict[str, Any]) -> None:
        """Timestamps are written as UTC instants: a time parsed without a zone is TIMESTAMP_NTZ on
        Spark, and the session runs in UTC, so the cast keeps the instant."""
        native = frame.to_native()
        native = native.select(*(
            native[f.name].cast("timestamp").alias(f.name) if isinstance(f.dataType, TimestampNTZType) else native[f.name]
            for f in native.schema.fields
        ))
        self.lakehouse.target(layer, table).overwrite(native, metadata)

    def append(self, layer: str, table: str, rows: pl.DataFrame) -> None:
        target = self.lakehouse.target(layer, table)
        writer = arrow_frame(self.spark, rows.to_arrow(compat_level=pl.CompatLevel.oldest())).write.format("delta").mode("append")
        if target.name:
            writer.saveAsTable(target.name)
        else:
            writer.save(target.path)

    def parse_messages(self, bronze: nw.LazyFrame) -> nw.LazyFrame:
        return nw.from_native(bronze.to_native().select("value", *COORDINATES).mapInArrow(parse_batches, from_arrow_schema(PARSED_ARROW)))

    def create_empty_stream_orders(self) -> None:
        empty = arrow_frame(self.spark, pl.DataFrame(schema=STREAM_ORDERS_SCHEMA).to_arrow(compat_level=pl.CompatLevel.oldest()))
        self.lakehouse.target("silver", STREAM_ORDERS).overwrite(empty, {INPUT_KEY: "empty"})

    def release(self, *frames: nw.LazyFrame) -> None:
        for frame in frames:
            frame.to_native().unpersist()
