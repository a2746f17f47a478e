"""The job wheel (deployments/job_wheel.py): what a Databricks cluster installs.

It must be slim (nothing a runtime has or a cluster does not need), renamed on every change of
its code, claim no generic top-level import name, and run bronze, the stream and silver from a
fresh virtualenv that holds only what Databricks Runtime 17.3 LTS ships (PySpark, Delta, and its
numpy, pyarrow and pandas) without pip touching those.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import polars as pl
import pytest
from confluent_kafka import Producer

from logistics_pipeline.tasks.core.contract import KAFKA_ORDERS, STREAM_ORDERS
from logistics_pipeline.tasks.core.silver import SILVER_TABLES
from logistics_pipeline.tasks.kafka.client import KafkaClientConfig, client_extras, ensure_topic
from logistics_pipeline.tasks.local.lake import Lake
from tests.fixtures.spark import IVY_SETTINGS, JVM_OPTIONS, KAFKA_CONNECTOR, SPARK_CONF, assert_same
from tests.local_layers import build_local_layers

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deployments"))
import job_wheel  # noqa: E402  (deployments/ is a folder of scripts, not a package)

# What Databricks Runtime 17.3 LTS (Spark 4.0.0, Python 3.12) ships, from its release notes.
RUNTIME = ["pyspark==4.0.1", "delta-spark==4.0.1", "numpy==2.1.3", "pyarrow==19.0.1", "pandas==2.2.3"]
NOT_ON_A_CLUSTER = {"prefect", "prefect-dbt", "prefect-databricks", "dbt-core", "dbt-duckdb", "duckdb", "deltalake",
                    "pydantic-settings", "typer", "faker", "databricks-sdk"}
GENERIC_NAMES = {"tasks", "flows", "datasets"}


def requirement_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    return {line.split(":", 1)[1].strip().split(" ")[0].split(">")[0].split("=")[0].split("<")[0].lower()
            for line in metadata.splitlines() if line.startswith("Requires-Dist:")}


def top_level_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {name.split("/")[0] for name in archive.namelist() if not name.split("/")[0].endswith(".dist-info")}


@pytest.fixture(scope="module")
def job_wheel_file(tmp_path_factory) -> Path:
    return job_wheel.build(tmp_path_factory.mktemp("dist"))


def test_the_job_wheel_requires_only_what_a_runtime_lacks(job_wheel_file):
    requires = requirement_names(job_wheel_file)
    assert requires == {"polars", "narwhals", "orjson", "confluent-kafka", "numpy", "pyarrow"}
    assert not requires & NOT_ON_A_CLUSTER
    assert top_level_names(job_wheel_file) == {"logistics_pipeline"}
    with zipfile.ZipFile(job_wheel_file) as archive:
        entry_points = archive.read(next(n for n in archive.namelist() if n.endswith("entry_points.txt"))).decode()
        packed = {name for name in archive.namelist() if name.endswith(".py")}
    assert "logistics-spark = logistics_pipeline.tasks.spark.job:cli" in entry_points
    assert "logistics_pipeline/tasks/core/runner.py" in packed
    assert not {name for name in packed if "/local/" in name or "/gold/" in name or "/orchestration/" in name or "/flows/" in name}


def test_a_change_of_code_is_a_new_file_name(job_wheel_file, tmp_path):
    assert job_wheel.build(job_wheel_file.parent) == job_wheel_file  # same code, same file
    copy = tmp_path / "project"
    shutil.copytree(ROOT / "tasks", copy / "tasks", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy)
    with (copy / "tasks" / "core" / "silver.py").open("a") as file:
        file.write("\n# a change\n")
    changed = job_wheel.build(tmp_path / "dist", root=copy)
    assert changed.name != job_wheel_file.name
    assert changed.name.startswith("logistics_pipeline_job-0.1.0+")


def test_an_unlisted_third_party_import_stops_the_build():
    with pytest.raises(SystemExit, match="the job imports sqlalchemy"):
        job_wheel.requirements({"polars", "pyspark", "sqlalchemy"})


def test_no_installed_distribution_claims_a_generic_top_level_name(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(tmp_path), str(ROOT)], check=True)
    (project_wheel,) = tmp_path.glob("logistics_pipeline-*.whl")
    assert top_level_names(project_wheel) == {"logistics_pipeline"}
    site_packages = [path for path in sys.path if path.endswith("site-packages")]  # not the checkout's stray egg-info
    (installed_project,) = [d for d in importlib.metadata.distributions(path=site_packages) if d.name == "logistics-pipeline"]
    assert installed_project.read_text("top_level.txt").split() == ["logistics_pipeline"]
    shown = subprocess.run([sys.executable, "-m", "pip", "show", "--files", "logistics-pipeline"], capture_output=True, text=True, check=True).stdout
    listed = shown.split("Files:", 1)[1].split()
    assert not {entry.split("/")[0] for entry in listed} & GENERIC_NAMES


# --- the job from a clean venv that holds only what the runtime ships ---------------------------

def submit_args(tmp_path: Path) -> str:
    """spark-submit arguments for the console script's own ``getOrCreate()``: what a Databricks
    cluster configures for it (Delta, the Kafka source, UTC), here from the test session's conf."""
    ivy = tmp_path / "ivysettings.xml"
    ivy.write_text(IVY_SETTINGS)
    delta = f"io.delta:delta-spark_2.13:{importlib.metadata.version('delta-spark')}"
    conf = {**SPARK_CONF, "spark.jars.ivySettings": str(ivy), "spark.sql.warehouse.dir": str(tmp_path / "warehouse"),
            "spark.driver.extraJavaOptions": f"-Dderby.system.home={tmp_path}/derby {JVM_OPTIONS}"}
    return " ".join([f"--packages {delta},{KAFKA_CONNECTOR}", *(f"--conf '{k}={v}'" for k, v in conf.items()), "pyspark-shell"])


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory, job_wheel_file) -> Path:
    """A venv with the runtime's packages, then the job wheel installed on top as a cluster does."""
    venv = tmp_path_factory.mktemp("runtime") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *RUNTIME], check=True)
    subprocess.run([*pip, str(job_wheel_file)], check=True)
    return venv


def installed(venv: Path) -> dict[str, str]:
    frozen = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "freeze"], capture_output=True, text=True, check=True).stdout
    return dict(line.lower().split("==", 1) for line in frozen.splitlines() if "==" in line)


def run_job(venv: Path, tmp_path: Path, *args: str) -> dict:
    """``logistics-spark ARGS`` from the venv, outside the checkout and with no PYTHONPATH: the
    wheel alone must be enough. Returns the JSON summary, its last line."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PYSPARK_PYTHON=str(venv / "bin" / "python"), PYSPARK_SUBMIT_ARGS=submit_args(tmp_path),
               PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}")
    done = subprocess.run([str(venv / "bin" / "logistics-spark"), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def comparable(frame: pl.DataFrame) -> pl.DataFrame:
    frame = frame.drop([column for column in ("_ingested_at", "_batch_id") if column in frame.columns])
    return frame.sort(frame.columns, nulls_last=True)


@pytest.mark.spark
@pytest.mark.kafka
def test_the_job_wheel_runs_bronze_stream_and_silver_in_a_clean_runtime_venv(runtime_venv, tmp_path, kafka_bootstrap):
    from logistics_pipeline.datasets.generate import generate_datasets

    assert {name: installed(runtime_venv)[name] for name in ("numpy", "pyarrow", "pandas")} == {
        "numpy": "2.1.3", "pyarrow": "19.0.1", "pandas": "2.2.3"}, "pip must leave the runtime's packages alone"
    assert not installed(runtime_venv).keys() & NOT_ON_A_CLUSTER
    sources, lake = tmp_path / "sources", tmp_path / "lake"
    generate_datasets(sources, scale=0.02, seed=5)

    topic = f"orders-{uuid.uuid4().hex[:8]}"
    config = KafkaClientConfig(bootstrap_servers=kafka_bootstrap)
    ensure_topic(config, topic, partitions=1)
    good = ('{"event_id":"e-%d","event_time":"2026-11-20T10:00:00Z","order_number":"WX%d","customer_id":11000,'
            '"order_date":"2026-11-20","ship_date":"2026-11-27","due_date":"2026-12-02",'
            '"lines":[{"product_number":"BK-1","quantity":2,"price":10.0,"sales_amount":20.0}]}')
    producer = Producer({**config.producer_config(), **client_extras()})
    for value in [(good % (n, n)).encode() for n in range(5)] + [b"not json"]:
        producer.produce(topic, value)
    assert producer.flush(60) == 0

    bronze = run_job(runtime_venv, tmp_path, "bronze", "--source-path", str(sources), "--lake", str(lake))
    stream = run_job(runtime_venv, tmp_path, "stream", "--bootstrap-servers", kafka_bootstrap, "--topic", topic,
                     "--checkpoint", str(tmp_path / "checkpoint"), "--lake", str(lake))
    silver = run_job(runtime_venv, tmp_path, "silver", "--lake", str(lake))

    assert bronze["failed"] == [] and len(bronze["tables"]) == 6
    assert pl.read_delta(str(lake / "bronze" / KAFKA_ORDERS)).height == 6, stream
    assert pl.read_delta(str(lake / "silver" / STREAM_ORDERS)).height == 5
    assert pl.read_delta(str(lake / "quarantine" / STREAM_ORDERS)).height == 1
    assert silver["failed"] == []

    local = Lake(str(tmp_path / "local"))
    build_local_layers(sources, local)
    for table in SILVER_TABLES:
        for layer in ("silver", "quarantine"):
            assert_same(comparable(pl.read_delta(local.uri(layer, table.name))),
                        comparable(pl.read_delta(str(lake / layer / table.name))), f"{layer}/{table.name}")
