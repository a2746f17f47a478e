"""The local engine's tables for the silver runner (``tasks.core.runner``): Delta tables in the
lake, read and written with delta-rs, computed with polars' streaming engine in this process.

Memory stays bounded whatever the table's size: bronze is scanned file by file; once the store
has read a large table (``SPILL_ROWS``), what the runner materializes is streamed to a spill
file (Parquet, in a temporary folder of the store's own, never in the lake) and read back
lazily, and tables are written to Delta batch by batch. The one step whose state grows with
the data, merging duplicates, runs in buckets of the merge key (``merge``). Small tables stay
in memory and pay none of this. Use the store as a context manager: its spill folder goes with
it, also when a build fails.

A table's state is ``lake.table_state``: its version, its Delta table id and its commit's time.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import narwhals as nw
import polars as pl
import pyarrow as pa

from logistics_pipeline.tasks.core.contract import INPUT_KEY, STREAM_ORDERS
from logistics_pipeline.tasks.core.runner import Commit
from logistics_pipeline.tasks.core.silver import SilverTable, merged
from logistics_pipeline.tasks.core.stream import STREAM_ORDERS_SCHEMA, parse_messages
from logistics_pipeline.tasks.errors import PipelineError
from logistics_pipeline.tasks.local import lake

SPILL_ROWS = 500_000
"""A store that has read a table of more rows than this spills what it materializes and writes
tables batch by batch; below it, frames stay in memory, where they cost less than files would."""
SPILL_COMPRESSION = "lz4"
"""Spill files are read back once or twice, soon: a fast codec, not a small file."""
BUCKET_ROWS = 2_000_000
"""Rows merged at once: a table with more cleansed rows merges its duplicates bucket by bucket."""
_BUCKET = "_bucket"
WRITE_BATCH_ROWS = 250_000
"""Rows per batch handed to delta-rs when writing a table."""


class Spill:
    """The store's spill folder, made at the first spill under the machine's temporary folder
    (``TMPDIR``), and the files each materialized frame holds there. ``close`` removes it; so
    does the garbage collector, for a store that was never closed. ``needed`` is set once the
    store has read a table of more than ``SPILL_ROWS`` rows."""

    def __init__(self) -> None:
        self.needed = False
        self._folder: Path | None = None
        self._remove: weakref.finalize | None = None
        self._names = itertools.count()
        self._held: dict[int, list[Path]] = {}

    def new_file(self) -> Path:
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="logistics-spill-"))
            self._remove = weakref.finalize(self, shutil.rmtree, self._folder, ignore_errors=True)
        return self._folder / f"{next(self._names)}.parquet"

    def hold(self, files: list[Path]) -> nw.LazyFrame:
        """A lazy scan of ``files``, which are deleted when the frame is released."""
        frame = nw.from_native(pl.scan_parquet(files))
        self._held[id(frame)] = files
        return frame

    def holds(self, frame: nw.LazyFrame) -> bool:
        return id(frame) in self._held

    def release(self, frame: nw.LazyFrame) -> None:
        for file in self._held.pop(id(frame), []):
            file.unlink(missing_ok=True)

    def close(self) -> None:
        if self._remove is not None:
            self._remove()
        self._folder, self._remove = None, None
        self._held.clear()


@dataclass(frozen=True)
class DeltaStore:
    """The lake's Delta tables as a ``tasks.core.runner.TableStore``."""

    lake: lake.Lake
    spill: Spill = field(default_factory=Spill, compare=False, repr=False)

    def __enter__(self) -> DeltaStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.spill.close()

    def last_commit(self, layer: str, table: str) -> Commit | None:
        uri = self.lake.uri(layer, table)
        found = lake.open_table(uri)
        if found is None:
            return None
        commit = lake.commit_history(found, limit=1)[0]
        metadata = {key: value for key, value in commit.items() if key.startswith("logistics.")}
        return Commit(found.version(), lake.state_of(uri, found, commit), metadata)

    def read(self, layer: str, table: str, version: int) -> nw.LazyFrame:
        frame = nw.from_native(lake.scan_table(self.lake.uri(layer, table), version=version))
        if not self.spill.needed and self.count(frame) > SPILL_ROWS:  # from the files' footers
            self.spill.needed = True
        return frame

    def materialize(self, frame: nw.LazyFrame) -> nw.LazyFrame:
        """One frame, as ``materialize_from`` does it."""
        (materialized,) = self.materialize_from(frame, frame)
        return materialized

    def materialize_from(self, shared: nw.LazyFrame, *frames: nw.LazyFrame) -> tuple[nw.LazyFrame, ...]:
        """Each of ``frames`` streamed to a spill file and read back lazily (its row count is in
        the file's footer), or in memory while the store has read no large table. All of them in
        one polars query (``collect_all``), which computes ``shared`` once and never writes it."""
        natives = [frame.to_native() for frame in frames]
        if not self.spill.needed:
            return tuple(nw.from_native(result.lazy()) for result in pl.collect_all(natives))
        files = [self.spill.new_file() for _ in natives]
        pl.collect_all([native.sink_parquet(file, compression=SPILL_COMPRESSION, lazy=True) for native, file in zip(natives, files)])
        return tuple(self.spill.hold([file]) for file in files)

    def merge(self, table: SilverTable, cleansed: nw.LazyFrame) -> nw.LazyFrame:
        """``merged(table, cleansed)``, in buckets of ``BUCKET_ROWS``: the cleansed rows are split by
        a hash of the merge key in one pass (polars' partitioned sink), so a key's rows all fall in
        one bucket, and each bucket is merged on its own; the buckets' rows together are the merged
        table's. A table that ``derive``s columns across keys (products, a small dimension) merges
        in one piece."""
        buckets = 1 if table.derive or not self.spill.needed else -(-self.count(cleansed) // BUCKET_ROWS)
        if buckets <= 1:  # in memory: merging holds a bucket's rows anyway
            return merged(table, cleansed).collect().lazy()
        parts = self.spill.new_file().with_suffix("")  # a folder per bucket: parts/_bucket=<n>/*.parquet
        rows = cleansed.to_native().with_columns((pl.struct(list(table.merge_key)).hash() % buckets).alias(_BUCKET))
        rows.sink_parquet(pl.PartitionBy(parts, key=_BUCKET, include_key=False), compression=SPILL_COMPRESSION, mkdir=True)
        outputs = []
        for bucket in sorted(parts.iterdir()):
            outputs.append(self._sink(merged(table, nw.from_native(pl.scan_parquet(bucket / "*.parquet", hive_partitioning=False))).to_native()))
            shutil.rmtree(bucket)
        parts.rmdir()
        return self.spill.hold(outputs)

    def _sink(self, frame: pl.LazyFrame) -> Path:
        path = self.spill.new_file()
        frame.sink_parquet(path, compression=SPILL_COMPRESSION)
        return path

    def count(self, frame: nw.LazyFrame) -> int:
        return int(frame.select(nw.len()).collect().item())

    def overwrite(self, layer: str, table: str, frame: nw.LazyFrame, metadata: dict[str, Any]) -> None:
        """A spilled frame is streamed into one Delta commit, ``WRITE_BATCH_ROWS`` at a time; any
        other is written at once (the runner writes materialized frames: a frame not spilled is
        in memory)."""
        extra = {key: value for key, value in metadata.items() if key != INPUT_KEY}
        if not self.spill.holds(frame):
            lake.overwrite(self.lake.uri(layer, table), frame.collect().to_native(), input_fingerprint=metadata[INPUT_KEY], metadata=extra)
            return
        native = frame.to_native()
        schema = pl.DataFrame(schema=native.collect_schema()).to_arrow(compat_level=pl.CompatLevel.oldest()).schema

        def batches() -> Iterator[pa.RecordBatch]:
            for chunk in native.collect_batches(chunk_size=WRITE_BATCH_ROWS):
                yield from chunk.to_arrow(compat_level=pl.CompatLevel.oldest()).to_batches()

        lake.overwrite_batches(self.lake.uri(layer, table), schema, batches(), input_fingerprint=metadata[INPUT_KEY], metadata=extra)

    def append(self, layer: str, table: str, rows: pl.DataFrame) -> None:
        lake.append(self.lake.uri(layer, table), rows)

    def parse_messages(self, bronze: nw.LazyFrame) -> nw.LazyFrame:
        return nw.from_native(parse_messages(bronze.collect().to_native()).lazy())

    def create_empty_stream_orders(self) -> None:
        lake.overwrite(self.lake.uri("silver", STREAM_ORDERS), pl.DataFrame(schema=STREAM_ORDERS_SCHEMA), input_fingerprint="empty")

    def release(self, *frames: nw.LazyFrame) -> None:
        """Delete the spill files of these materialized frames."""
        for frame in frames:
            self.spill.release(frame)


def bronze_fingerprint(bronze_uri: str) -> str:
    """What a silver table depends on: the state of its bronze table, which must be sound."""
    problem = lake.table_problem(bronze_uri)
    if problem is not None:
        raise lake.DamagedTableError(bronze_uri, f"{problem}; run the bronze layer, which rebuilds it")
    state = lake.table_state(bronze_uri)
    if state is None:
        raise PipelineError(f"bronze table {bronze_uri} does not exist: run the bronze layer first")
    return state
