"""Bronze for the order stream: Kafka (or the local landing folder) into the Delta table
``kafka_orders``, exactly once.

Each batch is appended in one Delta commit that also records, as application transactions,
the next offset to read per partition (``kafka-<topic>-<partition>``) or per landing file
(``landing-<file>``). A restart resumes from those offsets, not from the consumer group, so
a crash at any point loses nothing and duplicates nothing. delta-rs does not deduplicate on
its own: rows below the recorded offset are dropped before every write.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import islice
from operator import itemgetter
from pathlib import Path

import numpy as np
import polars as pl
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake

from logistics_pipeline.tasks.core.contract import LANDING_ORDERS
from logistics_pipeline.tasks.core.stream import KAFKA_ORDERS_SCHEMA, decode_text, decode_texts
from logistics_pipeline.tasks.errors import PipelineError
from logistics_pipeline.tasks.kafka.client import existing_topic
from logistics_pipeline.tasks.local import lake

OFFSETS_KEY = "logistics.offsets"
OFFSET_KEY = "_offset_key"  # per-row app id (which partition or file a row came from); not written
SCHEMA = KAFKA_ORDERS_SCHEMA


@dataclass
class Batch:
    """Rows read from one source position range, and the next position per source after them."""

    rows: pl.DataFrame
    next_offsets: dict[str, int] = field(default_factory=dict)


def kafka_app_id(topic: str, partition: int) -> str:
    return f"kafka-{topic}-{partition}"


def landing_app_id(file_name: str) -> str:
    return f"landing-{file_name}"


def recorded_offset(table_uri: str, app_id: str) -> int | None:
    """The next position to read for ``app_id`` as committed with the table, if any."""
    if not lake.table_exists(table_uri):
        return None
    return DeltaTable(table_uri).transaction_version(app_id)


def write_batch(table_uri: str, batch: Batch) -> int:
    """Append the rows not yet in the table, with their end offsets, in one commit; returns rows written."""
    rows = batch.rows
    if lake.table_exists(table_uri):
        table = DeltaTable(table_uri)
        already = {app_id: table.transaction_version(app_id) for app_id in batch.next_offsets}
        bounds = pl.DataFrame(
            {OFFSET_KEY: list(already), "_done": [v if v is not None else -1 for v in already.values()]},
            schema={OFFSET_KEY: pl.String, "_done": pl.Int64},
        )
        rows = rows.join(bounds, on=OFFSET_KEY, how="left").filter(
            pl.col("_done").is_null() | (pl.col("offset") >= pl.col("_done"))
        ).drop("_done")
        pending = {a: v for a, v in batch.next_offsets.items() if already[a] is None or v > already[a]}
    else:
        pending = dict(batch.next_offsets)
    if not pending:
        return 0
    write_deltalake(
        table_uri,
        rows.drop(OFFSET_KEY).select(list(SCHEMA)),
        mode="append",
        commit_properties=CommitProperties(
            app_transactions=[Transaction(app_id=a, version=v) for a, v in pending.items()],
            custom_metadata={OFFSETS_KEY: json.dumps(pending)},
        ),
    )
    return rows.height


def _frame(values: list, keys: list, partitions: list, offsets: list, timestamps: list, sources: list, app_ids: list, batch_id: str) -> pl.DataFrame:
    now = datetime.now(timezone.utc)
    return pl.DataFrame(
        {
            "value": values,
            "key": keys,
            "partition": partitions,
            "offset": offsets,
            "timestamp": timestamps,
            "_ingested_at": [now] * len(values),
            "_source": sources,
            "_batch_id": [batch_id] * len(values),
            OFFSET_KEY: app_ids,
        },
        schema={**SCHEMA, OFFSET_KEY: pl.String},
    )


def _kafka_frame(topic: str, rows: pl.DataFrame, batch_id: str) -> pl.DataFrame:
    """Kafka messages (``_message_columns``) as bronze rows: decoded key and value, the message
    timestamp (a negative one means none), and the app id of each row's partition."""
    stamp = pl.col("timestamp")
    return rows.with_columns(
        decode_texts(rows["value"]).alias("value"),
        decode_texts(rows["key"]).alias("key"),
        pl.when(stamp >= 0).then(stamp).cast(pl.Datetime("ms", "UTC")).alias("timestamp"),
        pl.lit(datetime.now(timezone.utc)).cast(SCHEMA["_ingested_at"]).alias("_ingested_at"),
        pl.lit(topic).alias("_source"),
        pl.lit(batch_id).alias("_batch_id"),
        pl.format("kafka-{}-{}", pl.lit(topic), pl.col("partition")).alias(OFFSET_KEY),
    )


MESSAGE_COLUMNS = {"value": pl.Binary, "key": pl.Binary, "partition": pl.Int32, "offset": pl.Int64, "timestamp": pl.Int64}


def _message_columns(messages: list[Message]) -> pl.DataFrame:
    """What each message holds, column by column: ``map`` over the unbound accessors runs no
    Python code per message, about half the cost of a loop calling them (most of an ingest)."""
    return pl.DataFrame(
        {
            "value": list(map(Message.value, messages)),
            "key": list(map(Message.key, messages)),
            "partition": list(map(Message.partition, messages)),
            "offset": list(map(Message.offset, messages)),
            "timestamp": list(map(itemgetter(1), map(Message.timestamp, messages))),  # (type, milliseconds)
        },
        schema=MESSAGE_COLUMNS,
    )


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused while a batch is read. Each consume returns
    10,000 new Message objects (tracked by the collector) that live until their columns are
    built, so they reach the oldest generation and trigger full collections, each a walk over
    every object the process holds (Prefect's and polars' modules): a third of an ingest's
    CPU. Messages form no cycles, so reference counting frees them all the same."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _offset_ranges(chunk: pl.DataFrame) -> dict[int, tuple[int, int]]:
    """The first and last offset of each partition in ``chunk``."""
    partitions, offsets = chunk["partition"].to_numpy(), chunk["offset"].to_numpy()
    ranges = {}
    for partition in np.unique(partitions):
        in_partition = offsets[partitions == partition]
        ranges[int(partition)] = (int(in_partition.min()), int(in_partition.max()))
    return ranges


# --- Kafka ---------------------------------------------------------------------------------

@dataclass
class KafkaReader:
    """Reads a topic from the offsets recorded in the table up to the end offsets seen at start."""

    consumer: Consumer
    topic: str
    bootstrap_servers: str
    start: dict[int, int]
    end: dict[int, int]
    idle_timeout_s: float = 30.0

    @classmethod
    def open(cls, config: dict, topic: str, table_uri: str, bootstrap_servers: str, timeout_s: float = 15.0) -> "KafkaReader":
        consumer = Consumer(config)
        try:
            # Every topic's metadata, not just this one's: asking for one topic may create it.
            topics = consumer.list_topics(timeout=timeout_s).topics
        except Exception as error:
            consumer.close()
            raise PipelineError(f"could not read topic {topic!r} from Kafka at {bootstrap_servers}: {error}") from None
        try:
            partitions = sorted(existing_topic(topics, topic, bootstrap_servers).partitions)
            start, end = {}, {}
            for partition in partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout_s)
                recorded = recorded_offset(table_uri, kafka_app_id(topic, partition))
                start[partition] = max(low, recorded) if recorded is not None else low
                end[partition] = high
        except PipelineError:
            consumer.close()
            raise
        except Exception as error:
            consumer.close()
            raise PipelineError(f"could not read topic {topic!r} from Kafka at {bootstrap_servers}: {error}") from None
        pending = [TopicPartition(topic, p, start[p]) for p in partitions if start[p] < end[p]]
        if pending:
            consumer.assign(pending)
        return cls(consumer, topic, bootstrap_servers, start, end)

    @property
    def available(self) -> int:
        return self.remaining(self.start)

    def remaining(self, position: dict[int, int]) -> int:
        return sum(max(self.end[p] - position.get(p, self.start[p]), 0) for p in self.end)

    def done(self, position: dict[int, int]) -> bool:
        return self.remaining(position) == 0

    def batches(self, max_messages: int) -> Iterator[Batch]:
        """Batches of at most ``max_messages`` until every partition reaches its end offset."""
        position = dict(self.start)
        number = 0
        while not self.done(position):
            batch = self._read(position, max_messages, number)
            number += 1
            yield batch

    def _read(self, position: dict[int, int], max_messages: int, number: int) -> Batch:
        """One batch: the messages at or after ``position`` and before the end, per partition,
        which it advances. Each consumed list becomes columns at once (``_message_columns``);
        decoding and typing are column-wise in ``_kafka_frame``."""
        chunks: list[pl.DataFrame] = []
        count = 0
        idle_since = time.monotonic()
        with _collector_paused():
            while count < max_messages and not self.done(position):
                # Never more than are left before the end: consume() waits for as many as it is asked for.
                wanted = min(10_000, max_messages - count, self.remaining(position))
                messages = self._data(self.consumer.consume(num_messages=wanted, timeout=1.0))
                chunk = self._unread(_message_columns(messages), position) if messages else None
                if chunk is None or chunk.is_empty():
                    if time.monotonic() - idle_since > self.idle_timeout_s:
                        raise PipelineError(
                            f"Kafka at {self.bootstrap_servers} sent nothing for {self.idle_timeout_s:g}s while topic "
                            f"{self.topic!r} still had messages to read (positions {position}, ends {self.end})"
                        )
                    continue
                idle_since = time.monotonic()
                chunks.append(chunk)
                count += chunk.height
        rows = pl.concat(chunks) if chunks else pl.DataFrame(schema=MESSAGE_COLUMNS)
        next_offsets = {kafka_app_id(self.topic, p): position[p] for p in rows["partition"].unique()}
        return Batch(_kafka_frame(self.topic, rows, f"{self.topic}-{int(time.time() * 1000)}-{number}"), next_offsets)

    def _data(self, messages: list[Message]) -> list[Message]:
        """The messages that hold data; events (a partition's end) are dropped, a fatal error raises."""
        errors = [error for error in map(Message.error, messages) if error is not None]
        for error in errors:
            # The documented name of librdkafka's RD_KAFKA_RESP_ERR__PARTITION_EOF: client-side
            # error codes start with an underscore in confluent-kafka's public API.
            if error.code() != KafkaError._PARTITION_EOF and error.fatal():
                raise PipelineError(f"Kafka at {self.bootstrap_servers}: {error.str()}")
        return [message for message in messages if message.error() is None] if errors else messages

    def _unread(self, chunk: pl.DataFrame, position: dict[int, int]) -> pl.DataFrame:
        """The rows of ``chunk`` from ``position`` up to the end offset seen at start, per
        partition; ``position`` moves past them. Only a chunk that reaches past either bound
        (messages produced after the start) is filtered, the others are kept as they are.
        The bounds are found with numpy: a polars group-by per chunk waits for polars' thread
        pool, which the batch being written keeps busy."""
        ranges = _offset_ranges(chunk)
        if not all(p in position and position[p] <= first and last < self.end[p] for p, (first, last) in ranges.items()):
            partition, offset = pl.col("partition"), pl.col("offset")
            first = partition.replace_strict(position, default=None, return_dtype=pl.Int64)
            end = partition.replace_strict(self.end, default=None, return_dtype=pl.Int64)
            chunk = chunk.filter((offset >= first) & (offset < end))
            ranges = _offset_ranges(chunk)
        for p, (_, last) in ranges.items():
            position[p] = last + 1
        return chunk

    def commit_group_offsets(self, next_offsets: dict[str, int]) -> None:
        """Tell the consumer group where we are, only so that lag can be monitored."""
        prefix = f"kafka-{self.topic}-"
        offsets = [TopicPartition(self.topic, int(a.removeprefix(prefix)), v) for a, v in next_offsets.items()]
        if offsets:
            try:
                self.consumer.commit(offsets=offsets, asynchronous=True)
            except Exception:  # noqa: BLE001 - lag reporting must never fail an ingest
                pass

    def close(self) -> None:
        self.consumer.close()


# --- landing folder ------------------------------------------------------------------------

def landing_files(landing_dir: Path) -> list[Path]:
    """Producer files in creation order; temporary files being written are not included."""
    return sorted(landing_dir.glob("*.jsonl")) if landing_dir.is_dir() else []


def landing_lines(path: Path) -> Iterator[bytes]:
    """The lines of a landing file, read lazily (memory holds one line, not the file).

    Lines end where ``bytes.splitlines`` ends them, as earlier versions read the whole file:
    at LF, CRLF and a lone CR, nowhere else (for bytes, unlike str, not at VT, FF, FS-RS or
    NEL), and a final line end does not start an empty line. A line's offset is its 0-based
    index in that split and is recorded in the table, so it must not move between versions.
    The producer writes one JSON document per LF-terminated line (JSON has no raw CR or LF)."""
    with path.open("rb") as handle:
        for line in handle:
            yield from line.removesuffix(b"\n").splitlines() or [b""]


def landing_batches(landing_dir: Path, table_uri: str, max_messages: int) -> Iterator[Batch]:
    """Lines of landing files not yet in the table, at most ``max_messages`` per batch."""
    for path in landing_files(landing_dir):
        app_id = landing_app_id(path.name)
        first = recorded_offset(table_uri, app_id) or 0
        lines = islice(landing_lines(path), first, None)
        while chunk := list(islice(lines, max_messages)):
            count = len(chunk)
            rows = _frame(
                [decode_text(line) for line in chunk],
                [None] * count,
                [None] * count,
                list(range(first, first + count)),
                [None] * count,
                [f"{LANDING_ORDERS}/{path.name}"] * count,
                [app_id] * count,
                f"{path.stem}-{first}",
            )
            yield Batch(rows, {app_id: first + count})
            first += count
