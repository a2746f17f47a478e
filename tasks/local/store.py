"""The local engine's tables for the silver runner (``tasks.core.runner``): Delta tables in the
lake, read and written with delta-rs, computed with polars in this process.

A table's state is ``lake.table_state``: its version, its Delta table id and its commit's time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import narwhals as nw
import polars as pl

from logistics_pipeline.tasks.core.contract import INPUT_KEY, STREAM_ORDERS
from logistics_pipeline.tasks.core.runner import Commit
from logistics_pipeline.tasks.core.stream import STREAM_ORDERS_SCHEMA, parse_messages
from logistics_pipeline.tasks.errors import PipelineError
from logistics_pipeline.tasks.local import lake


@dataclass(frozen=True)
class DeltaStore:
    """The lake's Delta tables as a ``tasks.core.runner.TableStore``."""

    lake: lake.Lake

    def last_commit(self, layer: str, table: str) -> Commit | None:
        uri = self.lake.uri(layer, table)
        found = lake.open_table(uri)
        if found is None:
            return None
        commit = lake.commit_history(found, limit=1)[0]
        metadata = {key: value for key, value in commit.items() if key.startswith("logistics.")}
        return Commit(found.version(), lake.state_of(uri, found, commit), metadata)

    def read(self, layer: str, table: str, version: int) -> nw.LazyFrame:
        return nw.from_native(lake.read_table(self.lake.uri(layer, table), version=version).lazy())

    def materialize(self, frame: nw.LazyFrame) -> nw.LazyFrame:
        return frame.collect().lazy()

    def count(self, frame: nw.LazyFrame) -> int:
        return int(frame.select(nw.len()).collect().item())

    def overwrite(self, layer: str, table: str, frame: nw.LazyFrame, metadata: dict[str, Any]) -> None:
        extra = {key: value for key, value in metadata.items() if key != INPUT_KEY}
        lake.overwrite(self.lake.uri(layer, table), frame.collect().to_native(), input_fingerprint=metadata[INPUT_KEY], metadata=extra)

    def append(self, layer: str, table: str, rows: pl.DataFrame) -> None:
        lake.append(self.lake.uri(layer, table), rows)

    def parse_messages(self, bronze: nw.LazyFrame) -> nw.LazyFrame:
        return nw.from_native(parse_messages(bronze.collect().to_native()).lazy())

    def create_empty_stream_orders(self) -> None:
        lake.overwrite(self.lake.uri("silver", STREAM_ORDERS), pl.DataFrame(schema=STREAM_ORDERS_SCHEMA), input_fingerprint="empty")

    def release(self, *frames: nw.LazyFrame) -> None:
        """Nothing to release: materialized frames are polars frames, freed with their last reference."""


def bronze_fingerprint(bronze_uri: str) -> str:
    """What a silver table depends on: the state of its bronze table, which must be sound."""
    problem = lake.table_problem(bronze_uri)
    if problem is not None:
        raise lake.DamagedTableError(bronze_uri, f"{problem}; run the bronze layer, which rebuilds it")
    state = lake.table_state(bronze_uri)
    if state is None:
        raise PipelineError(f"bronze table {bronze_uri} does not exist: run the bronze layer first")
    return state
