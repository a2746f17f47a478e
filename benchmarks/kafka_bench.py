"""produce_msgs_per_s and ingest_msgs_per_s: the project's stream code against Kafka's own tools.

Same broker, same machine, one after the other:
  produce   the project's produce-messages path (generating the orders included) into topic A,
            then org.apache.kafka.tools.ProducerPerformance into topic B (same partitions) with
            the project's average record size, acks=all and enable.idempotence=true.
  ingest    the project's Kafka -> bronze Delta ingestion (offsets committed with the data)
            reading topic A, then org.apache.kafka.tools.ConsumerPerformance reading topic A.

Each project side is one function (`produce_project`, `ingest_project`); when the code it
needs does not exist it raises NotAvailable and the harness records null with the reason.
"""

from __future__ import annotations

import csv
import importlib.util
import inspect
import io
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks.common import OUT_DIR, PROJECT_ROOT, NotAvailable, fresh_dir, log

PARTITIONS = 3
LOCAL_KAFKA = PROJECT_ROOT / "deployments" / "local_kafka.py"


_IMPORT_LOCK = threading.Lock()


def local_kafka() -> ModuleType:
    """deployments/local_kafka.py, imported by path (it is a script, not a package module)."""
    with _IMPORT_LOCK:
        if "local_kafka" in sys.modules:
            return sys.modules["local_kafka"]
        if not LOCAL_KAFKA.exists():
            raise NotAvailable(f"{LOCAL_KAFKA} does not exist")
        spec = importlib.util.spec_from_file_location("local_kafka", LOCAL_KAFKA)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["local_kafka"] = module  # dataclasses look their module up while the file executes
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules["local_kafka"]
            raise
        return module


# --- the broker --------------------------------------------------------------------------------


@dataclass
class BrokerHandle:
    bootstrap: str
    started_here: Any = None  # local_kafka.Broker when the harness started it
    data_dir: Path | None = None
    startup_seconds: float | None = None

    def stop(self) -> None:
        if self.started_here is not None:
            self.started_here.stop()
            self.started_here = None
            if self.data_dir is not None:
                shutil.rmtree(self.data_dir, ignore_errors=True)


def broker_from_env_or_start() -> BrokerHandle:
    """KAFKA_BOOTSTRAP_SERVERS when set; otherwise a broker of our own on a free port."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or os.environ.get("LOGISTICS_KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        log(f"kafka: using the configured broker {configured}")
        return BrokerHandle(configured)
    kafka = local_kafka()
    data_dir = fresh_dir(OUT_DIR / f"kafka-broker-{os.getpid()}")
    began = time.perf_counter()
    broker = kafka.start_broker(data_dir, kafka.free_port())
    seconds = time.perf_counter() - began
    log(f"kafka: started a broker at {broker.bootstrap} in {seconds:.1f}s (data in {data_dir})")
    return BrokerHandle(broker.bootstrap, broker, data_dir, round(seconds, 2))


def create_topic(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})  # keep a reference until the future resolves
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    futures[topic].result(timeout=60)
    del admin


def topic_messages(bootstrap: str, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-count-{uuid.uuid4().hex[:6]}"})
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        total = 0
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            total += high - low
        return total
    finally:
        consumer.close()


# --- the project's side ------------------------------------------------------------------------


def _wrapper_flow(name: str, body):
    """A flow around a project function, so that its tasks and run logger have a flow run."""
    from prefect import flow

    @flow(name=name, persist_result=False)
    def wrapper() -> tuple[float, Any]:
        began = time.perf_counter()
        result = body()
        return time.perf_counter() - began, result

    return wrapper


def average_record_bytes(sample: int = 20_000) -> dict[str, float]:
    """Average key and value size of the project's order messages (the shipped reference data)."""
    try:
        from logistics_pipeline.tasks.core.orders import generate_orders
        from logistics_pipeline.tasks.local.order_catalog import reference_data
    except ImportError as error:
        raise NotAvailable(f"logistics_pipeline.tasks.core.orders is not importable: {error}") from None
    reference = reference_data(str(OUT_DIR / "no-lake"))  # no silver there: customers and products from the CSVs
    batch = generate_orders(sample, 1, reference.customers, reference.products, 0.0)
    return {
        "value": sum(map(len, batch.values)) / len(batch),
        "key": sum(map(len, batch.keys)) / len(batch),
    }


def produce_project(bootstrap: str, topic: str, count: int) -> dict[str, Any]:
    """The project's produce-messages flow function (flows.produce.produce_messages.fn)."""
    try:
        from logistics_pipeline.flows.produce import produce_messages
    except ImportError as error:
        raise NotAvailable(f"logistics_pipeline.flows.produce is not importable yet: {error}") from None
    lake = fresh_dir(OUT_DIR / f"produce-lake-{os.getpid()}")  # per harness: two harnesses on one machine never share a lake

    def body() -> dict[str, Any]:
        return produce_messages.fn(count=count, seed=7, bootstrap_servers=bootstrap, topic=topic, partitions=PARTITIONS, lake=str(lake))

    try:
        seconds, summary = _wrapper_flow("bench-produce", body)()
    finally:
        shutil.rmtree(lake, ignore_errors=True)
    if summary.get("delivered") != count:
        raise RuntimeError(f"the project delivered {summary.get('delivered')} of {count} messages")
    return {"seconds": seconds, "messages": count, "flow_reported_seconds": summary.get("seconds"), "summary": summary}


def ingest_project(bootstrap: str, topic: str, expected: int) -> dict[str, Any]:
    """The project's Kafka -> bronze kafka_orders ingestion (flows.bronze.ingest_stream)."""
    try:
        from logistics_pipeline.flows.bronze import ingest_stream
        from logistics_pipeline.tasks.core.contract import KAFKA_ORDERS
        from logistics_pipeline.tasks.kafka.connection import KafkaConnection
        from logistics_pipeline.tasks.local.lake import Lake, row_count
    except ImportError as error:
        raise NotAvailable(f"stream ingestion is not available yet: {error}") from None
    folder = fresh_dir(OUT_DIR / f"ingest-lake-{os.getpid()}")  # per harness: two harnesses on one machine never share a lake
    lake = Lake(str(folder))
    connection = KafkaConnection(bootstrap_servers=bootstrap)
    options: dict[str, Any] = {}
    if "batch_messages" in inspect.signature(ingest_stream).parameters:  # the batch size the pipeline runs with
        from logistics_pipeline.tasks.settings import load_settings

        options["batch_messages"] = getattr(load_settings(), "stream_batch_messages", 100_000)

    def body() -> int:
        return ingest_stream(connection, topic, lake, **options)

    try:
        seconds, written = _wrapper_flow("bench-ingest", body)()
        rows = row_count(lake.uri("bronze", KAFKA_ORDERS))
        if rows != expected:
            raise RuntimeError(f"bronze kafka_orders holds {rows} rows after ingesting a topic of {expected} messages")
        # exactly once: a second pass finds nothing new and writes nothing
        again_seconds, again = _wrapper_flow("bench-ingest-again", body)()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"seconds": seconds, "messages": written, "bronze_rows": rows, "rerun_new_messages": again, "rerun_seconds": round(again_seconds, 3),
            "options": options}


# --- Kafka's tools -------------------------------------------------------------------------------


def _java_tool(tool: str, args: list[str], log_name: str, timeout: float = 900) -> str:
    lib = local_kafka().ensure_jars()
    cmd = ["java", "-Xmx512m", "-cp", f"{lib}/*", f"org.apache.kafka.tools.{tool}", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    (OUT_DIR / log_name).write_text(f"$ {' '.join(cmd)}\n{done.stdout}\n--- stderr\n{done.stderr}")
    if done.returncode != 0:
        raise RuntimeError(f"{tool} failed (exit {done.returncode}): {(done.stderr or done.stdout)[-800:]}")
    return done.stdout


def producer_perf(bootstrap: str, topic: str, count: int, record_bytes: int, extra_props: list[str] | None = None) -> dict[str, Any]:
    props = ["acks=all", "enable.idempotence=true", *(extra_props or [])]
    out = _java_tool(
        "ProducerPerformance",
        ["--bootstrap-server", bootstrap, "--topic", topic, "--num-records", str(count), "--record-size", str(record_bytes),
         "--throughput", "-1", "--command-property", *props],
        f"producer-perf-{topic}.log",
    )
    summary = [line for line in out.splitlines() if f"{count} records sent" in line]
    if not summary:
        raise RuntimeError(f"ProducerPerformance printed no summary: {out[-500:]}")
    match = re.search(r"records sent, ([0-9.]+) records/sec \(([0-9.]+) MB/sec\), ([0-9.]+) ms avg latency", summary[-1])
    assert match, summary[-1]
    return {"msgs_per_s": float(match.group(1)), "mb_per_s": float(match.group(2)), "avg_latency_ms": float(match.group(3)),
            "props": props, "summary": summary[-1]}


def project_batching_props() -> list[str]:
    """linger.ms, batch.size and compression.type as the project's producer sets them."""
    from logistics_pipeline.tasks.kafka.connection import KafkaConnection

    config = KafkaConnection(bootstrap_servers="unused").producer_config()
    return [f"{name}={config[name]}" for name in ("linger.ms", "batch.size", "compression.type") if name in config]


def consumer_perf(bootstrap: str, topic: str, count: int) -> dict[str, Any]:
    out = _java_tool(
        "ConsumerPerformance",
        ["--bootstrap-server", bootstrap, "--topic", topic, "--num-records", str(count), "--group", f"bench-perf-{uuid.uuid4().hex[:8]}",
         "--timeout", "60000"],
        f"consumer-perf-{topic}.log",
    )
    lines = [line for line in out.splitlines() if line.strip()]
    header = next(i for i, line in enumerate(lines) if line.startswith("start.time"))
    names = [n.strip() for n in lines[header].split(",")]
    values = next(csv.reader(io.StringIO(lines[header + 1])))
    row = dict(zip(names, (v.strip() for v in values), strict=False))
    consumed = int(row["data.consumed.in.nMsg"])
    if consumed < count:
        raise RuntimeError(f"ConsumerPerformance consumed {consumed} of {count} messages")
    return {"msgs_per_s": float(row["nMsg.sec"]), "fetch_msgs_per_s": float(row["fetch.nMsg.sec"]),
            "rebalance_ms": float(row["rebalance.time.ms"]), "fetch_ms": float(row["fetch.time.ms"]), "consumed": consumed}


# --- the section ---------------------------------------------------------------------------------


def kafka_section(messages: int, broker: BrokerHandle | None, broker_error: str | None = None, tuned: bool = True) -> dict[str, Any]:
    """Both Kafka keys; whichever side cannot run is null with its reason in kafka_detail."""
    produce: dict[str, Any] = {"project": None, "kafka_perf_tool": None, "record_bytes": None}
    ingest: dict[str, Any] = {"project": None, "kafka_perf_tool": None}
    detail: dict[str, Any] = {"messages": messages, "partitions": PARTITIONS, "unavailable": {}}
    if broker is None:
        reason = f"no Kafka broker: {broker_error}"
        detail["unavailable"] = {"produce_msgs_per_s": reason, "ingest_msgs_per_s": reason}
        return {"produce_msgs_per_s": produce, "ingest_msgs_per_s": ingest, "kafka_detail": detail}
    detail["bootstrap"] = broker.bootstrap
    detail["broker"] = "started by the harness (deployments/local_kafka.py)" if broker.started_here else "configured (KAFKA_BOOTSTRAP_SERVERS)"
    run_id = uuid.uuid4().hex[:8]
    project_topic, perf_topic = f"bench-orders-{run_id}", f"bench-perf-{run_id}"

    try:
        sizes = average_record_bytes()
        produce["record_bytes"] = round(sizes["value"])
        detail["record_key_bytes"] = round(sizes["key"], 1)
    except NotAvailable as error:
        detail["unavailable"]["record_bytes"] = str(error)

    produced = False
    try:
        result = produce_project(broker.bootstrap, project_topic, messages)
        produce["project"] = round(messages / result["seconds"], 1)
        detail["produce_project"] = {
            "seconds": round(result["seconds"], 3),
            "includes": "produce_messages.fn inside a flow run: broker check, topic creation, reference data from the CSVs, "
                        "generating the orders, producing, waiting for every delivery report",
            "flow_reported_seconds": result["flow_reported_seconds"],
            "flow_reported_msgs_per_s": round(messages / result["flow_reported_seconds"], 1) if result["flow_reported_seconds"] else None,
        }
        produced = True
        log(f"kafka produce project: {produce['project']:,.0f} msgs/s ({result['seconds']:.2f}s for {messages})")
    except NotAvailable as error:
        detail["unavailable"]["produce_msgs_per_s.project"] = str(error)
    except Exception as error:  # noqa: BLE001
        detail["unavailable"]["produce_msgs_per_s.project"] = f"failed: {error}"[:800]

    if produce["record_bytes"]:
        try:
            create_topic(broker.bootstrap, perf_topic)
            perf = producer_perf(broker.bootstrap, perf_topic, messages, produce["record_bytes"])
            produce["kafka_perf_tool"] = perf["msgs_per_s"]
            detail["produce_perf_tool"] = perf
            log(f"kafka ProducerPerformance: {perf['msgs_per_s']:,.0f} msgs/s")
        except Exception as error:  # noqa: BLE001
            detail["unavailable"]["produce_msgs_per_s.kafka_perf_tool"] = f"failed: {error}"[:800]
        try:  # context only (full variant): the tool with the project's own batching and compression settings
            if not tuned:
                raise NotAvailable("measured in the full variant only")
            tuned_topic = f"{perf_topic}-tuned"
            create_topic(broker.bootstrap, tuned_topic)
            perf = producer_perf(broker.bootstrap, tuned_topic, messages, produce["record_bytes"], project_batching_props())
            detail["produce_perf_tool_with_project_batching"] = {
                **perf, "note": "not the goal's baseline; random payload bytes compress worse than the project's JSON"}
            log(f"kafka ProducerPerformance with the project's batching: {perf['msgs_per_s']:,.0f} msgs/s")
        except Exception as error:  # noqa: BLE001
            detail["produce_perf_tool_with_project_batching"] = {"not_measured": f"{error}"[:500]}

    if not produced:
        # the ingest comparison still needs a topic of project messages: fill one without the project's producer
        try:
            fill_topic_with_orders(broker.bootstrap, project_topic, messages)
            produced = True
        except Exception as error:  # noqa: BLE001
            detail["unavailable"]["ingest_msgs_per_s"] = f"no topic of order messages to ingest: {error}"[:800]
    if produced:
        available = topic_messages(broker.bootstrap, project_topic)
        try:
            result = ingest_project(broker.bootstrap, project_topic, available)
            ingest["project"] = round(result["messages"] / result["seconds"], 1)
            detail["ingest_project"] = {**{k: result[k] for k in ("messages", "bronze_rows", "rerun_new_messages", "rerun_seconds", "options")},
                                        "seconds": round(result["seconds"], 3),
                                        "includes": "logistics_pipeline.flows.bronze.ingest_stream inside a flow run: watermarks, offsets from the table, "
                                                    "consume, Delta appends with the offsets in the same commit"}
            log(f"kafka ingest project: {ingest['project']:,.0f} msgs/s")
        except NotAvailable as error:
            detail["unavailable"]["ingest_msgs_per_s.project"] = str(error)
        except Exception as error:  # noqa: BLE001
            detail["unavailable"]["ingest_msgs_per_s.project"] = f"failed: {error}"[:800]
        try:
            perf = consumer_perf(broker.bootstrap, project_topic, available)
            ingest["kafka_perf_tool"] = perf["msgs_per_s"]
            detail["ingest_perf_tool"] = {**perf, "note": "msgs_per_s = nMsg.sec (whole run incl. group join); fetch_msgs_per_s excludes the join"}
            log(f"kafka ConsumerPerformance: {perf['msgs_per_s']:,.0f} msgs/s")
        except Exception as error:  # noqa: BLE001
            detail["unavailable"]["ingest_msgs_per_s.kafka_perf_tool"] = f"failed: {error}"[:800]

    return {
        "produce_msgs_per_s": produce,
        "ingest_msgs_per_s": ingest,
        "kafka_detail": detail,
    }


def fill_topic_with_orders(bootstrap: str, topic: str, count: int) -> None:
    """Order messages without the project's producer flow (only when that flow is unavailable)."""
    from confluent_kafka import Producer

    from logistics_pipeline.tasks.core.orders import generate_orders
    from logistics_pipeline.tasks.local.order_catalog import reference_data

    create_topic(bootstrap, topic)
    reference = reference_data(str(OUT_DIR / "no-lake"))
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 25})
    for start in range(0, count, 50_000):
        batch = generate_orders(min(50_000, count - start), 3, reference.customers, reference.products, 0.0, start=start)
        for key, value in zip(batch.keys, batch.values, strict=True):
            while True:
                try:
                    producer.produce(topic, value, key)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.poll(0)
    if producer.flush(120) != 0:
        raise RuntimeError("not every order message was delivered")
