"""produce-messages: synthetic orders into the Kafka topic, or into the landing folder without Kafka.

Kafka is used when a broker is configured (the ``bootstrap_servers`` parameter, a saved
``Kafka Connection`` block, or ``LOGISTICS_KAFKA_BOOTSTRAP_SERVERS`` / ``KAFKA_BOOTSTRAP_SERVERS``).
Every message must be acknowledged by the brokers (idempotent producer, acks=all) or the run
fails naming how many were not. Without Kafka, one JSON-lines file per run appears atomically
in ``<lake>/landing/orders/``, one message value per line.

Orders are generated and sent chunk by chunk, so memory stays bounded for any count.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Protocol
from uuid import UUID, uuid4

from confluent_kafka import KafkaError, KafkaException, Producer
from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from logistics_pipeline.tasks.core.orders import MAX_INDEX, MAX_SEED, ReferenceData, generate_orders
from logistics_pipeline.tasks.errors import PipelineError
from logistics_pipeline.tasks.kafka.client import MESSAGE_TIMEOUT_MS, client_extras, ensure_topic, reason
from logistics_pipeline.tasks.kafka.connection import KafkaConnection, check_broker, load_kafka_connection
from logistics_pipeline.tasks.local.lake import Lake
from logistics_pipeline.tasks.local.order_catalog import reference_data
from logistics_pipeline.tasks.orchestration.logs import run_logger
from logistics_pipeline.tasks.settings import load_settings

CHUNK = 50_000  # messages generated (and held in memory) at a time
SLICE = 10_000  # messages handed to the transport between progress and rate checks
FLUSH_TIMEOUT_S = MESSAGE_TIMEOUT_MS / 1000 + 15  # every message has a delivery report by then


class Sink(Protocol):
    """Where messages go: ``send`` slices (False: stop, a message failed), then ``finish`` once or ``abort``."""

    def send(self, keys: list[bytes], values: list[bytes]) -> bool: ...
    def finish(self) -> int: ...
    def abort(self) -> None: ...


# --- transports --------------------------------------------------------------------------


@dataclass
class KafkaSink:
    """An idempotent producer counting its delivery reports; stops at the first failed message."""

    connection: KafkaConnection
    topic: str
    delivered: int = 0
    first_error: str | None = None
    _producer: Producer = field(init=False, repr=False)
    _seen_errors: set[str] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        self._producer = Producer(
            {**self.connection.producer_config(), **client_extras(), "on_delivery": self._on_delivery, "error_cb": self._on_error}
        )

    def _on_delivery(self, error: KafkaError | None, _message: Any) -> None:
        if error is None:
            self.delivered += 1
        elif self.first_error is None:
            self.first_error = error.str()

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal() and self.first_error is None:
            self.first_error = f"fatal producer error: {error.str()}"
        elif error.str() not in self._seen_errors:  # librdkafka repeats transport errors every second
            self._seen_errors.add(error.str())
            run_logger(__name__).warning("Kafka at %s: %s (retrying)", self.connection.bootstrap_servers, error.str())

    def send(self, keys: list[bytes], values: list[bytes]) -> bool:
        """Queue the messages; False as soon as any message has failed (sending more is pointless)."""
        produce, poll = self._producer.produce, self._producer.poll
        for key, value in zip(keys, values, strict=True):
            while True:
                try:
                    produce(self.topic, value, key)
                    break
                except BufferError:  # the bounded local queue is full: serve delivery reports, retry
                    poll(0.05)
                    if self.first_error is not None:
                        return False
                except KafkaException as error:  # refused locally (e.g. larger than message.max.bytes)
                    self.first_error = self.first_error or reason(error)
                    return False
        poll(0)
        return self.first_error is None

    def finish(self) -> int:
        self._producer.flush(FLUSH_TIMEOUT_S)
        self._close()
        return self.delivered

    def abort(self) -> None:
        self._producer.flush(5)  # a short grace for what is in flight; the run has failed anyway
        self._close()

    def _close(self) -> None:
        """Give up on anything still queued (it counts as undelivered) and stop the client's threads."""
        self._producer.purge()
        self._producer.flush(1)  # serve the purge's delivery reports
        close = getattr(self._producer, "close", None)  # confluent-kafka >= 2.11
        if close is not None:
            close()


@dataclass
class LandingSink:
    """One JSON-lines file per run, written under a hidden temp name and renamed when complete."""

    folder: Path
    seed: int
    sent: int = 0
    path: Path = field(init=False)
    _temp: Path = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        self.path = self.folder / f"orders-{stamp}-{self.seed:06d}-{uuid4().hex[:8]}.jsonl"
        self._temp = self.folder / f".{self.path.name}.tmp"  # readers list *.jsonl; they skip this
        self._file = open(self._temp, "wb")  # noqa: SIM115 - closed in finish/abort

    def send(self, keys: list[bytes], values: list[bytes]) -> bool:
        self._file.write(b"\n".join(values) + b"\n")
        self.sent += len(values)
        return True

    def finish(self) -> int:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        if self.sent:
            os.replace(self._temp, self.path)
            _fsync_dir(self.folder)
        else:
            self._temp.unlink()
        return self.sent

    def abort(self) -> None:
        self._file.close()
        self._temp.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- pacing and progress -------------------------------------------------------------------


@dataclass
class Progress:
    """A progress artifact and a log line every 10% or every few seconds, whichever comes first."""

    total: int
    every_s: float = 5.0
    done: int = 0
    _artifact: UUID | None = None
    _started: float = field(default_factory=time.monotonic)
    _last_time: float = field(default_factory=time.monotonic)
    _last_percent: float = 0.0

    def __post_init__(self) -> None:
        self._artifact = create_progress_artifact(0.0, key="produce-messages", description="Messages produced so far")

    def advance(self, messages: int) -> None:
        self.done += messages
        percent = 100.0 * self.done / self.total if self.total else 100.0
        now = time.monotonic()
        if percent >= self._last_percent + 10 or now - self._last_time >= self.every_s or self.done == self.total:
            self._last_percent, self._last_time = percent, now
            if self._artifact is not None:
                update_progress_artifact(self._artifact, percent)
            rate = self.done / max(now - self._started, 1e-9)
            get_run_logger().info("produced %d of %d messages (%.0f%%, %.0f messages/s)", self.done, self.total, percent, rate)


@dataclass
class Pacer:
    """Holds production to ``rate`` messages/s (None: as fast as possible)."""

    rate: float | None
    _started: float = field(default_factory=time.monotonic)

    @property
    def slice_size(self) -> int:
        return SLICE if self.rate is None else max(1, min(SLICE, int(self.rate / 10)))

    def wait(self, sent: int) -> None:
        if self.rate is not None:
            delay = self._started + sent / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)


# --- tasks ---------------------------------------------------------------------------------


@task(cache_policy=NO_CACHE)
def create_topic(connection: KafkaConnection, topic: str, partitions: int) -> bool:
    created = ensure_topic(connection.client(), topic, partitions)
    get_run_logger().info("topic %s %s", topic, f"created with {partitions} partitions" if created else "exists")
    return created


@task(cache_policy=NO_CACHE)
def load_reference_data(lake: str, source_dir: Path) -> ReferenceData:
    reference = reference_data(lake, source_dir)
    get_run_logger().info(
        "orders refer to %d customers and %d current products (from %s)", len(reference.customers), len(reference.products), reference.source
    )
    return reference


@dataclass(frozen=True)
class Run:
    """What one produce-messages run generates (the same for every chunk)."""

    seed: int
    bad_fraction: float
    now: datetime
    reference: ReferenceData


@task(cache_policy=NO_CACHE, task_run_name="produce-chunk-{start}")
def produce_chunk(sink: Sink, run: Run, start: int, count: int, pacer: Pacer, progress: Progress) -> dict[str, int] | None:
    """Generate messages start .. start+count-1 and hand them to the transport (never retried).

    Returns the chunk's counts, or None when the transport reported a failed message.
    """
    batch = generate_orders(count, run.seed, run.reference.customers, run.reference.products, run.bad_fraction, run.now, start=start)
    for offset in range(0, count, pacer.slice_size):
        end = min(offset + pacer.slice_size, count)
        if not sink.send(batch.keys[offset:end], batch.values[offset:end]):
            get_run_logger().error("a message was not delivered; producing stopped after %d messages", start + offset)
            return None
        progress.advance(end - offset)
        pacer.wait(start + end)
    return {"messages": len(batch), "order_lines": batch.order_lines, "good_order_lines": batch.good_order_lines, "bad_messages": batch.bad_messages}


# --- the flow ------------------------------------------------------------------------------


@flow(name="produce-messages")
def produce_messages(
    count: Annotated[int, Field(ge=0, le=MAX_INDEX, description="How many order messages to produce.")] = 1000,
    seed: Annotated[int | None, Field(ge=0, lt=MAX_SEED, description="Same seed, same orders; different seeds never share an order number. Empty: a new seed each run (what schedules want).")] = None,
    rate: Annotated[float | None, Field(gt=0, description="Messages per second at most; empty means as fast as possible.")] = None,
    bad_fraction: Annotated[float, Field(ge=0, le=1, description="Share of deliberately bad messages (malformed, missing field, ...).")] = 0.0,
    topic: Annotated[str | None, Field(min_length=1, description="Kafka topic (default: LOGISTICS_KAFKA_TOPIC, 'orders').")] = None,
    partitions: Annotated[int, Field(ge=1, description="Partitions when the topic has to be created.")] = 3,
    bootstrap_servers: Annotated[str | None, Field(description="HOST:PORT of Kafka; empty uses the block or settings, else the landing folder.")] = None,
    lake: Annotated[str | None, Field(description="Lake folder (landing folder and reference data); default LOGISTICS_LAKE.")] = None,
    kafka_block: Annotated[str | None, Field(description="Name of a saved 'Kafka Connection' block to use.")] = None,
) -> dict[str, Any]:
    """Produce ``count`` synthetic orders for real customers and products; returns what was produced.

    Args:
        count: How many order messages to produce.
        seed: Same seed, same orders; different seeds never share an order number. Empty: a new seed each run (what schedules want).
        rate: Messages per second at most; empty means as fast as possible.
        bad_fraction: Share of deliberately bad messages (malformed, missing field, ...).
        topic: Kafka topic (default: LOGISTICS_KAFKA_TOPIC, 'orders').
        partitions: Partitions when the topic has to be created.
        bootstrap_servers: HOST:PORT of Kafka; empty uses the block or settings, else the landing folder.
        lake: Lake folder (landing folder and reference data); default LOGISTICS_LAKE.
        kafka_block: Name of a saved 'Kafka Connection' block to use.
    """
    if bootstrap_servers and kafka_block:
        raise PipelineError("give either bootstrap_servers or kafka_block, not both")
    settings = load_settings(lake=lake, kafka_bootstrap_servers=bootstrap_servers)
    logger = get_run_logger()
    if seed is None:
        seed = secrets.randbelow(MAX_SEED)
        logger.info("seed %d (pass it again to replay these orders)", seed)
    connection = load_kafka_connection(kafka_block, settings)  # None: no Kafka, use the landing folder
    topic = topic or settings.kafka_topic

    if connection is not None:
        logger.info("transport: Kafka at %s, topic %s", connection.bootstrap_servers, topic)
        check_broker(connection)
        create_topic(connection, topic, partitions)
    elif not settings.is_local_lake:
        raise PipelineError(f"no Kafka configured and the lake {settings.lake} is not a local folder for the landing files")
    reference = load_reference_data(settings.lake, settings.source_dir)

    sink: Sink
    if connection is not None:
        sink = KafkaSink(connection, topic)
        where: dict[str, Any] = {"transport": "kafka", "topic": topic, "bootstrap_servers": connection.bootstrap_servers}
    else:
        sink = LandingSink(Path(Lake(settings.lake).landing_orders), seed)
        logger.info("transport: landing folder (no Kafka configured), file %s", sink.path)
        where = {"transport": "landing", "path": str(sink.path)}

    run = Run(seed, bad_fraction, datetime.now(timezone.utc), reference)
    totals = {"messages": 0, "order_lines": 0, "good_order_lines": 0, "bad_messages": 0}
    started = time.monotonic()
    try:
        pacer, progress = Pacer(rate), Progress(count)
        for start in range(0, count, CHUNK):
            counts = produce_chunk(sink, run, start, min(CHUNK, count - start), pacer, progress)
            if counts is None:
                break  # finish() below still collects the reports of what was sent: the counts are exact
            totals = {name: totals[name] + counts[name] for name in totals}
    except BaseException:
        sink.abort()
        raise
    delivered = sink.finish()
    seconds = time.monotonic() - started
    if isinstance(sink, KafkaSink) and delivered < count:
        raise PipelineError(
            f"{count - delivered} of {count} messages were not delivered to Kafka at {sink.connection.bootstrap_servers} "
            f"(topic {topic}); first error: {sink.first_error or f'no delivery report within {FLUSH_TIMEOUT_S:g}s'}"
        )

    summary = {
        **where,
        **totals,
        "delivered": delivered,
        "seconds": round(seconds, 3),
        "messages_per_s": round(delivered / seconds) if seconds > 0 else 0,
    }
    logger.info("produced %(delivered)d messages (%(order_lines)d order lines, %(bad_messages)d bad) in %(seconds).1fs", summary)
    create_table_artifact(key="produce-messages-summary", table=[summary], description="What this produce-messages run sent")
    return summary
