"""The Spark entrypoint: what a Databricks job run executes for the bronze, stream and silver layers.

    python -m logistics_pipeline.tasks.spark.job bronze --source-path /Volumes/main/raw/exports --catalog main --schema logistics
    python -m logistics_pipeline.tasks.spark.job stream --bootstrap-servers broker:9092 --topic orders \
        --checkpoint /Volumes/main/logistics/checkpoints/kafka_orders --catalog main --schema logistics
    python -m logistics_pipeline.tasks.spark.job silver --catalog main --schema logistics

It runs on whatever SparkSession is active (the cluster's on Databricks; a local one in the
tests) and writes Unity Catalog Delta tables ``<catalog>.<schema>.[prefix]<layer>_<table>``
or, with ``--lake PATH``, path-based Delta tables ``PATH/<layer>/<table>`` (the local
engine's layout). Bronze reads each CSV with ``tasks.core.csv_source``'s reader on the driver, so
its rows, ``_line`` and ``_bronze_error`` are the local engine's by construction; silver runs
the same runner and narwhals rules as the local engine (``tasks.core.runner``) on Spark DataFrames. The stream layer
(``tasks.spark.stream``) appends the Kafka topic to bronze ``kafka_orders`` exactly once, and
silver builds ``stream_orders`` from it. Reruns on unchanged
input write nothing: each commit records its input (``userMetadata``). The last line printed
is a JSON summary, which the Databricks run output shows. Only DataFrame APIs are used (no
RDDs, no JVM handles), as Spark Connect (serverless, shared clusters) requires.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import polars as pl
from pyspark.errors import AnalysisException
from pyspark.sql import SparkSession

from logistics_pipeline.tasks.core.contract import INPUT_KEY, SOURCES, SourceFile
from logistics_pipeline.tasks.core.csv_source import (
    CsvFingerprint,
    SourceFileError,
    fingerprint_csv,
    read_csv_as_text,
)
from logistics_pipeline.tasks.core.quality import TableCounts
from logistics_pipeline.tasks.core.quality_log import record_quality
from logistics_pipeline.tasks.core.runner import run_silver_table, run_stream_orders
from logistics_pipeline.tasks.core.silver import SILVER_TABLES, SilverTable
from logistics_pipeline.tasks.errors import PipelineError, one_line
from logistics_pipeline.tasks.spark.store import SparkStore
from logistics_pipeline.tasks.spark.stream import SECRET_KEYS, KafkaSource, run_stream, scope_secrets
from logistics_pipeline.tasks.spark.tables import Lakehouse, Target, arrow_frame

PARALLEL_TABLES = 4
T = TypeVar("T")
R = TypeVar("R")


# --- bronze -----------------------------------------------------------------------------------

def local_copy(spark: SparkSession, path: str, workdir: Path) -> Path:
    """The file as a driver-local path. Local and Unity Catalog volume paths (``/Volumes/...``,
    mounted on every Databricks driver) are used as they are; anything else Spark can read
    (``abfss://``, ``s3://``, ``dbfs:/``, ``file://``) is fetched whole through ``binaryFile``."""
    if "://" not in path and not path.startswith("dbfs:"):
        return Path(path)
    try:
        row = spark.read.format("binaryFile").load(path).select("content").first()
    except AnalysisException:
        row = None
    if row is None:
        raise SourceFileError(path, "file not found")
    workdir.mkdir(parents=True, exist_ok=True)
    local = workdir / path.rstrip("/").rsplit("/", 1)[-1]
    local.write_bytes(bytes(row["content"]))
    return local


@dataclass(frozen=True)
class BronzeResult:
    table: str
    rows: int
    batch_id: str
    skipped: bool


def check_source(spark: SparkSession, source: SourceFile, source_path: str, workdir: Path) -> tuple[Path, CsvFingerprint]:
    """A local copy of the source file and its fingerprint; the refusals of the local engine."""
    path = f"{source_path.rstrip('/')}/{source.relative_path}"
    local = local_copy(spark, path, workdir / source.table)
    try:
        return local, fingerprint_csv(local, source)
    except SourceFileError as error:  # name the file the user gave, not the copy
        raise SourceFileError(path, error.problem) from None


def ingest_source(spark: SparkSession, source: SourceFile, local: Path, fingerprint: CsvFingerprint, target: Target) -> BronzeResult:
    """Land one checked CSV in its bronze table, unless the table's last commit already holds these bytes.

    The rows come from ``tasks.core.csv_source.read_csv_as_text`` itself: the same rows, ``_line`` and
    ``_bronze_error`` as the local engine, from one CSV reader rather than two kept in step.
    Spark's CSV source could not give them anyway: it has no line numbers, does not say
    which rows were malformed, and its row order across partitions is not the file's.
    Spark does the I/O: fetching the file and writing the Delta table."""
    last = target.last_commit(spark)
    if last is not None and last.input == fingerprint.sha256:
        return BronzeResult(source.table, target.rows(spark), fingerprint.batch_id, skipped=True)
    rows = read_csv_as_text(local, fingerprint, source.relative_path)
    frame = arrow_frame(spark, rows.to_arrow(compat_level=pl.CompatLevel.oldest()))  # large_string: Spark reads it
    target.overwrite(frame, {
        INPUT_KEY: fingerprint.sha256, "logistics.source": source.relative_path, "logistics.batch_id": fingerprint.batch_id,
    })
    return BronzeResult(source.table, rows.height, fingerprint.batch_id, skipped=False)


def run_bronze(spark: SparkSession, source_path: str, lakehouse: Lakehouse) -> list[BronzeResult]:
    """Every file is checked first, so one bad file stops the layer before anything is written;
    then the tables are written concurrently."""
    with tempfile.TemporaryDirectory(prefix="bronze-") as workdir:
        checked = {source.table: check_source(spark, source, source_path, Path(workdir)) for source in SOURCES}
        return in_parallel(
            lambda source: ingest_source(spark, source, *checked[source.table], lakehouse.target("bronze", source.table)),
            SOURCES,
        )


# --- silver -----------------------------------------------------------------------------------

def run_silver(spark: SparkSession, lakehouse: Lakehouse, run_id: str) -> tuple[list[TableCounts], list[PipelineError]]:
    """Every table is attempted: one that fails (schema drift) keeps its previous tables and
    does not stop the others, as in the local silver-layer flow. Then stream_orders, then the
    run's quality results (``quality_silver``) of every table built."""
    store = SparkStore(spark, lakehouse)
    run_at = datetime.now(timezone.utc)  # the time of this run's history versions and quality results

    def attempt(table: SilverTable) -> TableCounts | PipelineError:
        try:
            return run_silver_table(store, table, run_at=run_at)
        except PipelineError as error:
            return error

    results = in_parallel(attempt, SILVER_TABLES)
    counts = [r for r in results if isinstance(r, TableCounts)]
    failures = [r for r in results if isinstance(r, PipelineError)]
    try:
        stream = run_stream_orders(store)
    except PipelineError as error:
        failures.append(error)
    else:
        counts += [stream] if stream is not None else []
    record_quality(store, counts, run_id=run_id, engine="spark", run_at=run_at)
    return counts, failures


def in_parallel(work: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``work`` over ``items`` on a few threads, results in order. Spark runs jobs from several
    threads side by side, so one table's driver-side work (planning, Delta commits) overlaps
    another's tasks, as the local flow runs its tasks concurrently."""
    with ThreadPoolExecutor(max_workers=PARALLEL_TABLES) as pool:
        return list(pool.map(work, items))


# --- command line -------------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m logistics_pipeline.tasks.spark.job", description=__doc__.splitlines()[0])
    parser.add_argument("layer", choices=("bronze", "silver", "stream"))
    parser.add_argument("--source-path", help="folder holding source_crm/ and source_erp/ (a UC volume or cloud path); bronze only")
    parser.add_argument("--catalog", help="Unity Catalog catalog")
    parser.add_argument("--schema", help="Unity Catalog schema")
    parser.add_argument("--table-prefix", default="", help="prefix for every table name, e.g. dev_")
    parser.add_argument("--lake", help="write path-based Delta tables under PATH/<layer>/<table> instead (no metastore)")
    parser.add_argument("--run-id", help="id of the run in the quality results (silver; default: a new random id), e.g. the job run's id")
    stream = parser.add_argument_group("stream", "Kafka into bronze kafka_orders; the SASL user and password come from "
                                       "LOGISTICS_KAFKA_USERNAME/LOGISTICS_KAFKA_PASSWORD or --kafka-secret-scope, never from arguments")
    stream.add_argument("--bootstrap-servers", help="Kafka HOST:PORT[,HOST:PORT...]")
    stream.add_argument("--topic", default="orders", help="topic of the orders (default: orders)")
    stream.add_argument("--checkpoint", help="checkpoint location, e.g. /Volumes/main/logistics/checkpoints/kafka_orders")
    stream.add_argument("--security-protocol", default="PLAINTEXT", choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"))
    stream.add_argument("--sasl-mechanism", help="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
    stream.add_argument("--kafka-secret-scope", help=f"Databricks secret scope holding the keys {' and '.join(SECRET_KEYS)}")
    stream.add_argument("--batch-messages", type=int, default=100_000, help="at most this many messages per micro-batch (one Delta commit)")
    args = parser.parse_args(argv)
    if not args.lake and not (args.catalog and args.schema):
        parser.error("give --catalog and --schema (Unity Catalog), or --lake PATH")
    if args.layer == "bronze" and not args.source_path:
        parser.error("bronze needs --source-path")
    if args.layer == "stream" and not (args.bootstrap_servers and args.checkpoint):
        parser.error("stream needs --bootstrap-servers and --checkpoint")
    return args


def kafka_source(args: argparse.Namespace) -> KafkaSource:
    """The topic and its credentials: from LOGISTICS_KAFKA_USERNAME/_PASSWORD (the pipeline's setting
    names, read directly: the job wheel carries no settings library), or from the secret scope."""
    username, password = os.environ.get("LOGISTICS_KAFKA_USERNAME"), os.environ.get("LOGISTICS_KAFKA_PASSWORD")
    if args.kafka_secret_scope and password is None:
        username, password = scope_secrets(args.kafka_secret_scope)
    return KafkaSource(args.bootstrap_servers, args.topic, args.security_protocol, args.sasl_mechanism, username, password)


def main(argv: Sequence[str] | None = None, spark: SparkSession | None = None) -> dict[str, Any]:
    """Run one layer and print its summary as one JSON line (shown in the Databricks run output)."""
    args = parse_args(argv)
    source = kafka_source(args) if args.layer == "stream" else None
    spark = spark or SparkSession.builder.getOrCreate()
    spark.conf.set("spark.sql.session.timeZone", "UTC")  # narwhals' datetime rules need the session in UTC
    lakehouse = Lakehouse(catalog=args.catalog, schema=args.schema, prefix=args.table_prefix, lake=args.lake)
    failures: list[PipelineError] = []
    if args.layer == "bronze":
        results: list[Any] = run_bronze(spark, args.source_path, lakehouse)
    elif source is not None:
        results = [run_stream(spark, lakehouse, source, args.checkpoint, args.batch_messages)]
    else:
        results, failures = run_silver(spark, lakehouse, args.run_id or uuid.uuid4().hex)
    summary = {"layer": args.layer, "tables": [asdict(result) for result in results], "failed": [str(f) for f in failures]}
    print(json.dumps(summary), flush=True)
    if failures:
        raise PipelineError("; ".join(str(failure) for failure in failures))
    return summary


def cli() -> None:
    """The ``logistics-spark`` console script (a Databricks python_wheel_task's entry point):
    exit 0, or 1 with one line on stderr and no traceback, as ``logistics-pipeline`` does."""
    try:
        main(sys.argv[1:])
    except Exception as error:  # noqa: BLE001 - the job's one-line reason; the run fails with it
        message = one_line(error) or type(error).__name__
        print(f"error: {message}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    cli()
