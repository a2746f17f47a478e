"""The Spark entrypoint as a console script (what a Databricks python_wheel_task runs) and the
stream's Kafka connection: exit status 0 or 1 with one line, credentials never shown."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from logistics_pipeline.tasks.errors import PipelineError
from logistics_pipeline.tasks.spark.job import cli, main
from logistics_pipeline.tasks.spark.stream import KafkaSource, jaas_config, run_stream
from logistics_pipeline.tasks.spark.tables import Lakehouse

pytestmark = pytest.mark.spark

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = 'pa"ss\\word-S3CRET'
USERNAME = "APIKEY-S3CRET"
# What the console script setuptools writes does: sys.exit(<entry point>()).
CONSOLE_SCRIPT = "import sys; from logistics_pipeline.tasks.spark.job import cli; sys.exit(cli())"


def test_the_console_script_is_cli():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["logistics-spark"] == "logistics_pipeline.tasks.spark.job:cli"


def test_a_failure_exits_1_with_one_line_and_no_traceback(tmp_path):
    args = ["stream", "--lake", str(tmp_path), "--bootstrap-servers", "127.0.0.1:1", "--checkpoint", str(tmp_path / "cp"), "--kafka-secret-scope", "kafka"]
    done = subprocess.run([sys.executable, "-c", CONSOLE_SCRIPT, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "error: --kafka-secret-scope kafka works on Databricks only; elsewhere set LOGISTICS_KAFKA_USERNAME and LOGISTICS_KAFKA_PASSWORD"
    ]


def test_the_stream_names_what_is_missing(capsys):
    with pytest.raises(SystemExit):
        main(["stream", "--lake", "/tmp/lake", "--topic", "orders"])
    assert "stream needs --bootstrap-servers and --checkpoint" in capsys.readouterr().err


@pytest.mark.kafka
def test_success_exits_0_and_prints_the_summary(spark, kafka_bootstrap, tmp_path, monkeypatch, capsys):
    """A topic that does not exist yet: nothing to read, a normal run (in this process, on the test session's Spark)."""
    args = ["stream", "--lake", str(tmp_path), "--bootstrap-servers", kafka_bootstrap, "--topic", "no-such-topic-yet", "--checkpoint", str(tmp_path / "cp")]
    monkeypatch.setattr(sys, "argv", ["logistics-spark", *args])
    with pytest.raises(SystemExit) as exited:
        sys.exit(cli())
    assert exited.value.code is None
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["layer"] == "stream" and summary["tables"][0]["new_rows"] == 0 and summary["tables"][0]["partitions"] == 0


def test_an_unreachable_broker_is_one_line(spark, tmp_path, monkeypatch):
    monkeypatch.setattr("logistics_pipeline.tasks.spark.stream.METADATA_TIMEOUT_S", 1.0)
    source = KafkaSource("127.0.0.1:1", "orders", "SASL_SSL", "PLAIN", USERNAME, PASSWORD)
    with pytest.raises(PipelineError, match=r"could not read topic 'orders' from Kafka at 127\.0\.0\.1:1") as raised:
        run_stream(spark, Lakehouse(lake=str(tmp_path)), source, str(tmp_path / "cp"))
    assert "\n" not in str(raised.value) and PASSWORD not in str(raised.value) and USERNAME not in str(raised.value)


def test_sasl_options_for_the_java_client(monkeypatch):
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    source = KafkaSource("broker:9093", "orders", "SASL_SSL", "SCRAM-SHA-512", USERNAME, PASSWORD)
    assert source.spark_options() == {
        "kafka.bootstrap.servers": "broker:9093",
        "kafka.security.protocol": "SASL_SSL",
        "kafka.sasl.mechanism": "SCRAM-SHA-512",
        "kafka.sasl.jaas.config": (
            'org.apache.kafka.common.security.scram.ScramLoginModule required username="APIKEY-S3CRET" password="pa\\"ss\\\\word-S3CRET";'
        ),
    }
    assert PASSWORD not in repr(source) and USERNAME not in repr(source)
    assert KafkaSource("broker:9092", "orders").spark_options() == {"kafka.bootstrap.servers": "broker:9092", "kafka.security.protocol": "PLAINTEXT"}


def test_databricks_shades_the_kafka_client(monkeypatch):
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "15.4")
    assert jaas_config("PLAIN", "u", "p").startswith("kafkashaded.org.apache.kafka.common.security.plain.PlainLoginModule required ")
    with pytest.raises(PipelineError, match="GSSAPI"):
        jaas_config("GSSAPI", "u", "p")
