"""The order stream on Spark: Kafka into bronze ``kafka_orders`` exactly once, then silver
``stream_orders`` with the local engine's parser and rules.

Bronze is a Structured Streaming query: Spark's Kafka source, ``trigger(availableNow=True)``
(read what is there now, in batches of at most ``batch_messages``, then stop) and
``foreachBatch`` appending each batch to Delta with the idempotent-write options
``txnAppId``/``txnVersion``. The checkpoint remembers the offsets; a batch that Spark replays
after a crash between the Delta commit and the checkpoint commit has the same app id and
batch id, and Delta skips it. The app id includes the checkpoint's own query id: a new
checkpoint numbers its batches from 0 again, and must not be taken for one already written.
A new checkpoint starts from the offsets kept in the table (the next offset after the
largest per partition), so losing the checkpoint duplicates nothing either.

Silver runs ``tasks.core.stream.parse_messages`` (polars + orjson) on each Arrow batch of
bronze through ``mapInArrow``: it keys its rows by position within the batch it is given, so
batches are independent. ``validate`` and ``merge_events`` are the narwhals rules, on Spark.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType

import polars as pl
import pyarrow as pa
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from pyspark.errors import AnalysisException, StreamingQueryException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.pandas.types import from_arrow_schema

from logistics_pipeline.tasks.core.contract import KAFKA_ORDERS
from logistics_pipeline.tasks.core.stream import (
    COORDINATES,
    KAFKA_ORDERS_SCHEMA,
    LINE_FIELDS,
    ORDER_FIELDS,
    PARSE_RULE,
    decode_texts,
    parse_messages,
)
from logistics_pipeline.tasks.errors import PipelineError, first_line
from logistics_pipeline.tasks.kafka.client import KafkaClientConfig, client_extras, reason
from logistics_pipeline.tasks.spark.tables import Lakehouse, Target

METADATA_TIMEOUT_S = 15.0
# The Java Kafka client's SASL login modules; Databricks' built-in connector shades the client.
LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}
SECRET_KEYS = ("kafka-username", "kafka-password")  # in the Databricks secret scope
TEXT, INSTANT = pa.string(), pa.timestamp("us", "UTC")
# Bronze kafka_orders as Spark holds it: KAFKA_ORDERS_SCHEMA, with every timestamp in microseconds (Spark's only unit).
_ARROW_TYPES = {pl.String: TEXT, pl.Int32: pa.int32(), pl.Int64: pa.int64()}
KAFKA_ORDERS_ARROW = pa.schema([
    (name, INSTANT if isinstance(dtype, pl.Datetime) else _ARROW_TYPES[dtype]) for name, dtype in KAFKA_ORDERS_SCHEMA.items()
])
DECODED_ARROW = pa.schema([KAFKA_ORDERS_ARROW.field(name) for name in ("value", "key", "partition", "offset", "timestamp")])
# What parse_messages returns: the fields as text, the line, the parse rule, the message and its coordinates.
PARSED_ARROW = pa.schema(
    [pa.field(name, TEXT) for name in (*ORDER_FIELDS, *LINE_FIELDS)]
    + [pa.field("_line_index", pa.int64()), pa.field(PARSE_RULE, TEXT)]
    + [KAFKA_ORDERS_ARROW.field(name) for name in ("value", *COORDINATES)]
)


# --- where the stream is ------------------------------------------------------------------------

@dataclass(frozen=True)
class KafkaSource:
    """A topic and how to reach it. The SASL user and password are never shown (``repr``)."""

    bootstrap_servers: str
    topic: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    def spark_options(self) -> dict[str, str]:
        """Options of Spark's Kafka source (the Java client's settings, prefixed ``kafka.``)."""
        options = {"kafka.bootstrap.servers": self.bootstrap_servers, "kafka.security.protocol": self.security_protocol}
        if self.sasl_mechanism:
            options["kafka.sasl.mechanism"] = self.sasl_mechanism
        if self.username is not None or self.password is not None:
            options["kafka.sasl.jaas.config"] = jaas_config(self.sasl_mechanism or "PLAIN", self.username or "", self.password or "")
        return options

    def connection(self) -> KafkaClientConfig:
        """The same cluster for librdkafka, which lists the topic's partitions on the driver."""
        return KafkaClientConfig(
            bootstrap_servers=self.bootstrap_servers,
            security_protocol=self.security_protocol,  # type: ignore[arg-type]
            sasl_mechanism=self.sasl_mechanism,
            username=self.username,
            password=self.password,
        )


def jaas_config(mechanism: str, username: str, password: str) -> str:
    """``sasl.jaas.config`` for the Java client; on Databricks the client's classes are shaded."""
    module = LOGIN_MODULES.get(mechanism.upper())
    if module is None:
        raise PipelineError(f"SASL mechanism {mechanism!r} is not supported on Spark: use one of {', '.join(LOGIN_MODULES)}")
    if os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        module = f"kafkashaded.{module}"
    quote = lambda text: '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'  # noqa: E731
    return f"{module} required username={quote(username)} password={quote(password)};"


def scope_secrets(scope: str) -> tuple[str, str]:
    """The SASL user and password from a Databricks secret scope, read on the cluster, so the
    job's parameters name the scope and never hold the secret."""
    if not os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        raise PipelineError(
            f"--kafka-secret-scope {scope} works on Databricks only; elsewhere set LOGISTICS_KAFKA_USERNAME and LOGISTICS_KAFKA_PASSWORD"
        )
    from databricks.sdk.runtime import (
        dbutils,  # on every Databricks compute, serverless included
    )

    username, password = (dbutils.secrets.get(scope=scope, key=key) for key in SECRET_KEYS)
    return username, password


def topic_partitions(source: KafkaSource) -> list[int]:
    """The topic's partitions (none when it does not exist yet); the broker must answer in time."""
    admin = AdminClient({**source.connection().admin_config(), **client_extras()})
    try:
        # All topics, not just this one: asking for one topic's metadata may auto-create it.
        metadata = admin.list_topics(timeout=METADATA_TIMEOUT_S).topics.get(source.topic)
    except KafkaException as error:
        raise PipelineError(f"could not read topic {source.topic!r} from Kafka at {source.bootstrap_servers}: {reason(error)}") from None
    return sorted(metadata.partitions) if metadata is not None and metadata.error is None else []


def functions_of(frame: DataFrame) -> ModuleType:
    """Spark's functions for this frame's kind of session. ``pyspark.sql.functions`` chooses
    between classic and Spark Connect once per process, and its classic columns do not work on a
    Connect frame; a process may hold sessions of both kinds (the tests run the job on both)."""
    if type(frame).__module__.startswith("pyspark.sql.connect."):
        from pyspark.sql.connect import functions as connect_functions

        return connect_functions
    from pyspark.sql import functions

    return functions


def kept_offsets(spark: SparkSession, target: Target, topic: str) -> dict[int, int]:
    """The next offset to read per partition, after the last one the table holds."""
    if target.last_commit(spark) is None:
        return {}
    bronze = target.read(spark)
    F = functions_of(bronze)
    rows = bronze.where(F.col("_source") == topic).groupBy("partition").agg(F.max("offset").alias("last")).collect()
    return {int(row["partition"]): int(row["last"]) + 1 for row in rows if row["partition"] is not None}


def starting_offsets(topic: str, partitions: list[int], kept: dict[int, int]) -> str:
    """``startingOffsets`` (used by a new checkpoint only): where the table ends, earliest (-2)
    for a partition it holds nothing of. Spark wants every partition named."""
    return json.dumps({topic: {str(p): kept.get(p, -2) for p in partitions}})


def has_batches(spark: SparkSession, checkpoint: str) -> bool:
    """Whether the checkpoint has committed a batch (its ``commits`` folder holds one)."""
    try:
        return spark.read.text(f"{checkpoint.rstrip('/')}/commits").limit(1).count() > 0
    except AnalysisException:
        return False


# --- bronze --------------------------------------------------------------------------------------

def decode_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Kafka's binary key and value as text, by the local engine's own decoder (invalid UTF-8
    becomes U+FFFD): Spark's cast keeps invalid bytes, and ``make_valid_utf8`` is Spark 4 only."""
    for batch in batches:
        yield pa.RecordBatch.from_arrays(
            [
                decode_texts(batch.column("value").to_pylist()).to_arrow().cast(TEXT),
                decode_texts(batch.column("key").to_pylist()).to_arrow().cast(TEXT),
                *(batch.column(name) for name in ("partition", "offset", "timestamp")),
            ],
            schema=DECODED_ARROW,
        )


def checkpoint_id(spark: SparkSession, checkpoint: str) -> str:
    """The query id Spark keeps in the checkpoint (``metadata``): the same for every run on
    this checkpoint, new for a new one."""
    return json.loads(spark.read.text(f"{checkpoint.rstrip('/')}/metadata").first()[0])["id"]


@dataclass(frozen=True)
class BatchWriter:
    """``foreachBatch``: append one micro-batch to bronze, in the local engine's columns, once."""

    target: Target
    topic: str
    checkpoint: str

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        query_id = checkpoint_id(batch.sparkSession, self.checkpoint)
        decoded = batch.select(*DECODED_ARROW.names).mapInArrow(decode_batches, from_arrow_schema(DECODED_ARROW))
        F = functions_of(decoded)
        rows = decoded.select(
            "*",
            F.current_timestamp().alias("_ingested_at"),
            F.lit(self.topic).alias("_source"),
            F.lit(f"{self.topic}-{query_id[:8]}-{batch_id}").alias("_batch_id"),
        )
        self.target.append(rows, app_id=f"logistics-{KAFKA_ORDERS}-{self.topic}-{query_id}", version=batch_id)


@dataclass(frozen=True)
class StreamResult:
    """What a stream run did, for the job's JSON summary."""

    table: str
    rows: int
    new_rows: int
    partitions: int


def run_stream(spark: SparkSession, lakehouse: Lakehouse, source: KafkaSource, checkpoint: str, batch_messages: int = 100_000) -> StreamResult:
    """Append what the topic holds now and bronze does not to ``kafka_orders``, then stop.
    The table is the truth: a checkpoint that has read the topic while the table holds none of
    it (the table was dropped or reset) is refused, as resuming from it would skip messages."""
    target = lakehouse.target("bronze", KAFKA_ORDERS)
    before = target.rows(spark) if target.last_commit(spark) is not None else 0
    partitions = topic_partitions(source)
    if partitions:
        kept = kept_offsets(spark, target, source.topic)
        if not kept and has_batches(spark, checkpoint):  # the table was dropped or reset, not the checkpoint
            raise PipelineError(
                f"checkpoint {checkpoint} has read topic {source.topic!r} already but {target} holds none of it: "
                "delete the checkpoint to read the topic from the start"
            )
        stream = (
            spark.readStream.format("kafka").options(**source.spark_options())
            .option("subscribe", source.topic)
            .option("startingOffsets", starting_offsets(source.topic, partitions, kept))
            .option("maxOffsetsPerTrigger", str(batch_messages))
            .load()
        )
        query = (
            stream.writeStream.queryName(f"bronze-{KAFKA_ORDERS}-{source.topic}")
            .foreachBatch(BatchWriter(target, source.topic, checkpoint))
            .option("checkpointLocation", checkpoint)
            .trigger(availableNow=True)
            .start()
        )
        try:
            query.awaitTermination()
        except StreamingQueryException as error:
            message = first_line(error)
            raise PipelineError(f"reading topic {source.topic!r} into {target} failed: {message}") from None
    after = target.rows(spark) if target.last_commit(spark) is not None else 0
    return StreamResult(str(target), after, after - before, len(partitions))


# --- silver --------------------------------------------------------------------------------------

def parse_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """``parse_messages`` on each Arrow batch of bronze rows (``mapInArrow``)."""
    for batch in batches:
        parsed = parse_messages(pl.from_arrow(batch))
        yield from parsed.to_arrow(compat_level=pl.CompatLevel.oldest()).cast(PARSED_ARROW).to_batches()
