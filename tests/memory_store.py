"""A ``TableStore`` in memory (polars frames in a dict), so the silver runner's decisions can be
tested in milliseconds, with no Delta table, Spark session or server."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import narwhals as nw
import polars as pl

from logistics_pipeline.tasks.core.runner import Commit
from logistics_pipeline.tasks.core.silver import SilverTable, merged
from logistics_pipeline.tasks.core.stream import parse_messages

_states = itertools.count()


@dataclass
class Table:
    versions: list[tuple[pl.DataFrame, dict[str, Any], str]] = field(default_factory=list)


@dataclass
class MemoryStore:
    tables: dict[tuple[str, str], Table] = field(default_factory=dict)
    writes: list[tuple[str, str]] = field(default_factory=list)

    def put(self, layer: str, table: str, frame: pl.DataFrame, metadata: dict[str, Any] | None = None) -> None:
        """A new version of the table, with a state no other version ever had."""
        self.tables.setdefault((layer, table), Table()).versions.append((frame, dict(metadata or {}), f"{layer}/{table}#{next(_states)}"))

    def frame(self, layer: str, table: str) -> pl.DataFrame:
        return self.tables[(layer, table)].versions[-1][0]

    def last_commit(self, layer: str, table: str) -> Commit | None:
        found = self.tables.get((layer, table))
        if not found or not found.versions:
            return None
        _, metadata, state = found.versions[-1]
        return Commit(len(found.versions) - 1, state, metadata)

    def read(self, layer: str, table: str, version: int) -> nw.LazyFrame:
        return nw.from_native(self.tables[(layer, table)].versions[version][0].lazy())

    def materialize(self, frame: nw.LazyFrame) -> nw.LazyFrame:
        return frame.collect().lazy()

    def materialize_from(self, shared: nw.LazyFrame, *frames: nw.LazyFrame) -> tuple[nw.LazyFrame, ...]:
        return tuple(self.materialize(frame) for frame in frames)

    def merge(self, table: SilverTable, cleansed: nw.LazyFrame) -> nw.LazyFrame:
        return self.materialize(merged(table, cleansed))

    def count(self, frame: nw.LazyFrame) -> int:
        return int(frame.select(nw.len()).collect().item())

    def overwrite(self, layer: str, table: str, frame: nw.LazyFrame, metadata: dict[str, Any]) -> None:
        self.writes.append((layer, table))
        self.put(layer, table, frame.collect().to_native(), metadata)

    def append(self, layer: str, table: str, rows: pl.DataFrame) -> None:
        self.writes.append((layer, table))
        found = self.tables.get((layer, table))
        self.put(layer, table, rows if found is None else pl.concat([found.versions[-1][0], rows]))

    def parse_messages(self, bronze: nw.LazyFrame) -> nw.LazyFrame:
        return nw.from_native(parse_messages(bronze.collect().to_native()).lazy())

    def create_empty_stream_orders(self) -> None:
        from logistics_pipeline.tasks.core.stream import STREAM_ORDERS_SCHEMA

        self.put("silver", "stream_orders", pl.DataFrame(schema=STREAM_ORDERS_SCHEMA), {"logistics.input": "empty"})

    def release(self, *frames: nw.LazyFrame) -> None:
        pass
