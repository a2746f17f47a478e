"""Fast checks of parts that only slow tests reached before: the lake lock, the gold record,
maintenance planning, and the pure helpers of the Spark stream."""

from __future__ import annotations

import json
import os
import threading

import pytest

from logistics_pipeline.tasks.errors import PipelineError
from logistics_pipeline.tasks.gold import state as gold_state
from logistics_pipeline.tasks.local.lake import Lake
from logistics_pipeline.tasks.local.maintenance import check_retention
from logistics_pipeline.tasks.orchestration.lock import (
    LakeLockTimeout,
    describe,
    holds_lake_lock,
    lake_lock,
    read_holder,
)
from logistics_pipeline.tasks.settings import MaintenanceSettings, Settings

# --- the lake lock -----------------------------------------------------------------------------


def test_the_lock_records_its_holder_and_re_enters_in_one_thread(tmp_path):
    lake = str(tmp_path)
    with lake_lock(lake, timeout_s=1) as holder:
        assert holder["pid"] == os.getpid() and holds_lake_lock(lake)
        with lake_lock(lake, timeout_s=1):  # a sub-flow of the same run
            assert read_holder(lake)["pid"] == os.getpid()
    assert not holds_lake_lock(lake)


def test_another_thread_waits_for_the_lock(tmp_path):
    lake, errors = str(tmp_path), []

    def second() -> None:
        try:
            with lake_lock(lake, timeout_s=0.2):
                pass
        except LakeLockTimeout as error:
            errors.append(error)

    with lake_lock(lake, timeout_s=1):
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(5)
    assert len(errors) == 1


def test_object_store_lakes_are_not_locked():
    with lake_lock("s3://bucket/lake", timeout_s=0) as holder:
        assert holder is None


def test_the_holder_is_described_in_words():
    assert describe(None) == "another process (holder unknown)"
    text = describe({"pid": 7, "flow_run_id": "abc", "flow_run_name": "brave-fox", "flow": "logistics-pipeline", "since": "2026-12-04T10:00:00+00:00"})
    assert text == "pid 7 (flow run abc 'brave-fox' of logistics-pipeline), since 2026-12-04T10:00:00+00:00"


# --- the gold record ----------------------------------------------------------------------------


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(lake=str(tmp_path / "lake"))


def publish_a_gold(settings: Settings, rows: int = 3) -> None:
    import duckdb

    staged = gold_state.start_build(settings)
    with duckdb.connect(str(staged)) as connection:
        for table in ("dim_customers", "dim_products", "fact_orders"):
            connection.execute(f"create table main.{table} as select range as id from range({rows})")
    gold_state.publish(settings)


def test_gold_is_rebuilt_until_a_build_is_recorded(settings):
    inputs = {"silver": {"t": "uri@v0:id:1"}, "dbt_project": "p", "target": "local", "vars": {}}
    assert gold_state.why_rebuild(settings, inputs) == "no earlier build is recorded"
    publish_a_gold(settings)
    gold_state.record_gold_build(settings, inputs)
    assert gold_state.why_rebuild(settings, inputs) is None
    assert "changed since the last build" in gold_state.why_rebuild(settings, {**inputs, "silver": {"t": "uri@v0:id:2"}})


def test_a_gold_file_changed_in_place_or_deleted_is_rebuilt(settings):
    inputs = {"silver": {}, "dbt_project": "p", "target": "local", "vars": {}}
    publish_a_gold(settings)
    gold_state.record_gold_build(settings, inputs)
    path = gold_state.published_path(settings)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte, same size
    path.write_bytes(bytes(data))
    assert gold_state.why_rebuild(settings, inputs) is not None
    path.unlink()
    assert "is missing, does not open" in gold_state.why_rebuild(settings, inputs)


def test_a_failed_build_is_kept_aside_and_gold_stays(settings):
    publish_a_gold(settings, rows=3)
    before = gold_state.published_path(settings).read_bytes()
    gold_state.start_build(settings).write_bytes(b"not a database")
    kept = gold_state.keep_failed_build(settings)
    assert kept.read_bytes() == b"not a database"
    assert gold_state.published_path(settings).read_bytes() == before


def test_the_project_digest_is_stable():
    assert gold_state.project_digest() == gold_state.project_digest()


# --- maintenance planning -----------------------------------------------------------------------


def test_a_short_retention_is_refused_unless_allowed():
    with pytest.raises(PipelineError, match="under the tables' minimum of 168 h"):
        check_retention(MaintenanceSettings(retention_hours=1))
    check_retention(MaintenanceSettings(retention_hours=1, enforce_retention_duration=False))
    check_retention(MaintenanceSettings())


def test_maintenance_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("LOGISTICS_MAINTENANCE_RETENTION_HOURS", "240")
    monkeypatch.setenv("LOGISTICS_LOCK_TIMEOUT_SECONDS", "5")
    settings = Settings()
    assert settings.maintenance.retention_hours == 240 and settings.lock_timeout_seconds == 5


def test_maintenance_plans_only_tables_that_exist(tmp_path):
    from logistics_pipeline.tasks.local.maintenance import lake_tables

    assert lake_tables(Lake(str(tmp_path))) == []


# --- the Spark stream's pure helpers -------------------------------------------------------------


def test_jaas_config_quotes_credentials_and_names_the_login_module(monkeypatch):
    from logistics_pipeline.tasks.spark.stream import jaas_config

    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    assert jaas_config("plain", 'us"er', "p\\w") == (
        'org.apache.kafka.common.security.plain.PlainLoginModule required username="us\\"er" password="p\\\\w";'
    )
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "15.4")
    assert jaas_config("SCRAM-SHA-512", "u", "p").startswith("kafkashaded.org.apache.kafka.common.security.scram.ScramLoginModule required")
    with pytest.raises(PipelineError, match="SASL mechanism 'GSSAPI' is not supported on Spark"):
        jaas_config("GSSAPI", "u", "p")


def test_starting_offsets_resume_where_the_table_ends_and_start_new_partitions_at_the_earliest():
    from logistics_pipeline.tasks.spark.stream import starting_offsets

    assert json.loads(starting_offsets("orders", [0, 1, 2], {0: 17, 2: 5})) == {"orders": {"0": 17, "1": -2, "2": 5}}


def test_the_spark_source_never_shows_its_password():
    from logistics_pipeline.tasks.spark.stream import KafkaSource

    source = KafkaSource("broker:9092", "orders", "SASL_SSL", "PLAIN", "user", "s3cret")
    assert "s3cret" not in repr(source)
    assert "s3cret" in source.spark_options()["kafka.sasl.jaas.config"]
    assert source.connection().base_config()["sasl.password"] == "s3cret"
