"""The layer flows with engine=databricks, on a real Prefect server: bronze (then the stream),
silver, the job's summary returned and published as the local engine publishes it, Prefect's
retries, and credentials from a saved block. Only the Databricks REST API is faked
(``tests.fake_databricks``: Jobs API 2.2 over HTTPS, driven by the real databricks-sdk)."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from logistics_pipeline.tasks.core.quality import TableCounts
from logistics_pipeline.tasks.orchestration.quality import artifact_rows
from tests.fake_databricks import SUBMIT, FakeDatabricks, Outcome

pytestmark = pytest.mark.usefixtures("prefect_server")

KAFKA = "pkc-12345.eu-west-1.aws.confluent.cloud:9092"
SECRETS = ("dapi-flow-TOKEN-s3cret", "kafka-flow-PASSWORD-s3cret", "kafka-flow-USER-s3cret")
WHEEL = "/Volumes/main/logistics/artifacts/logistics_pipeline_job-0.1.0+3f9c2ab-py3-none-any.whl"
BRONZE = [{"table": "crm_cust_info", "rows": 18494, "batch_id": "crm_cust_info-3f9c", "skipped": False},
          {"table": "erp_loc_a101", "rows": 18484, "batch_id": "erp_loc_a101-77aa", "skipped": True}]
STREAM = [{"table": "main.logistics.bronze_kafka_orders", "rows": 120, "new_rows": 20, "partitions": 3}]
SILVER = [TableCounts("crm_cust_info", 18494, 18484, 3, 7), TableCounts("stream_orders", 120, 100, 5, 15)]


def summary(layer: str, tables: list[dict]) -> str:
    return json.dumps({"layer": layer, "tables": tables, "failed": []}) + "\n"


@pytest.fixture(scope="module")
def server():
    with FakeDatabricks(token=SECRETS[0]) as fake:
        yield fake


@pytest.fixture
def fake(server, monkeypatch) -> FakeDatabricks:
    server.reset()
    for name, value in {
        "REQUESTS_CA_BUNDLE": server.ca_file,
        "DATABRICKS_HOST": f"https://{server.host}/",
        "DATABRICKS_TOKEN": SECRETS[0],
        "LOGISTICS_DATABRICKS_WHEEL_PATH": WHEEL,
        "LOGISTICS_DATABRICKS_POLL_FREQUENCY_SECONDS": "0.01",
        "LOGISTICS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "LOGISTICS_KAFKA_SASL_MECHANISM": "PLAIN",
        "LOGISTICS_KAFKA_PASSWORD": SECRETS[1],
        "LOGISTICS_KAFKA_USERNAME": SECRETS[2],
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "LOGISTICS_KAFKA_BOOTSTRAP_SERVERS", "LOGISTICS_DATABRICKS_CREDENTIALS_BLOCK"):
        monkeypatch.delenv(name, raising=False)
    return server


def artifact(state, key: str) -> list[dict]:
    """The table artifact ``key`` that the flow run of ``state`` published."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    [found] = [a for a in artifacts if a.key == key]
    return json.loads(found.data) if isinstance(found.data, str) else found.data


def test_bronze_then_the_stream_return_and_publish_the_jobs_rows(fake, monkeypatch):
    from logistics_pipeline.flows.bronze import bronze_layer

    monkeypatch.setenv("LOGISTICS_DATABRICKS_KAFKA_SECRET_SCOPE", "kafka")
    fake.outcomes.extend([Outcome(logs=summary("bronze", BRONZE)), Outcome(logs=summary("stream", STREAM))])
    state = bronze_layer(engine="databricks", bootstrap_servers=KAFKA, return_state=True)

    assert state.result() == {"crm_cust_info": 18494, "erp_loc_a101": 18484, "kafka_orders": 120}
    assert artifact(state, "bronze-layer") == [
        {"table": "crm_cust_info", "rows": 18494, "ingested": True},
        {"table": "erp_loc_a101", "rows": 18484, "ingested": False},
        {"table": "kafka_orders", "rows": 120, "ingested": True},
    ]
    bronze, stream = fake.bodies(SUBMIT)
    assert bronze["tasks"][0]["python_wheel_task"]["parameters"][0] == "bronze"
    parameters = stream["tasks"][0]["python_wheel_task"]["parameters"]
    assert parameters[0] == "stream" and stream["tasks"][0]["task_key"] == "stream"
    assert parameters[parameters.index("--bootstrap-servers") + 1] == KAFKA
    assert parameters[parameters.index("--kafka-secret-scope") + 1] == "kafka"
    assert bronze["idempotency_token"] != stream["idempotency_token"]
    sent = json.dumps([r.body for r in fake.requests])
    assert not [secret for secret in SECRETS if secret in sent]


def test_without_kafka_only_the_csv_bronze_runs(fake):
    from logistics_pipeline.flows.bronze import bronze_layer

    fake.outcomes.append(Outcome(logs=summary("bronze", BRONZE)))
    assert bronze_layer(engine="databricks") == {"crm_cust_info": 18494, "erp_loc_a101": 18484}
    [bronze] = fake.bodies(SUBMIT)
    assert bronze["tasks"][0]["task_key"] == "bronze"


def test_silver_returns_and_publishes_the_jobs_counts(fake):
    from logistics_pipeline.flows.silver import silver_layer

    fake.outcomes.append(Outcome(logs=summary("silver", [asdict(c) for c in SILVER])))
    state = silver_layer(engine="databricks", return_state=True)
    assert state.result() == SILVER
    assert artifact(state, "silver-layer") == json.loads(json.dumps(artifact_rows(SILVER)))


def test_a_failed_run_is_retried_by_prefect_with_a_new_run(fake, monkeypatch):
    from logistics_pipeline.flows.silver import silver_layer
    from logistics_pipeline.tasks.databricks.jobs import idempotency_token

    monkeypatch.setenv("LOGISTICS_DATABRICKS_RUN_RETRIES", "1")
    fake.outcomes.extend([
        Outcome("FAILED", "Task silver failed", logs="error: cluster lost its driver\n"),
        Outcome(logs=summary("silver", [asdict(c) for c in SILVER])),
    ])
    state = silver_layer(engine="databricks", return_state=True)
    assert state.result() == SILVER
    first, second = fake.runs.values()
    assert fake.state(first)[1] == "FAILED" and fake.state(second)[1] == "SUCCESS"
    flow_run_id = str(state.state_details.flow_run_id)
    tokens = [body["idempotency_token"] for body in fake.bodies(SUBMIT)]
    assert tokens == [idempotency_token(flow_run_id, "silver", n) for n in (0, 0, 1)]


def test_credentials_from_a_saved_block(fake, monkeypatch):
    from prefect_databricks import DatabricksCredentials
    from pydantic import SecretStr

    from logistics_pipeline.flows.silver import silver_layer
    from logistics_pipeline.tasks.databricks.credentials import resolve_credentials
    from logistics_pipeline.tasks.databricks.settings import DatabricksSettings
    from logistics_pipeline.tasks.errors import PipelineError

    DatabricksCredentials(databricks_instance=f"https://{fake.host}/", token=SecretStr(SECRETS[0])).save("fake-workspace", overwrite=True)
    monkeypatch.delenv("DATABRICKS_HOST")
    monkeypatch.delenv("DATABRICKS_TOKEN")
    monkeypatch.setenv("LOGISTICS_DATABRICKS_CREDENTIALS_BLOCK", "fake-workspace")
    fake.outcomes.append(Outcome(logs=summary("silver", [asdict(c) for c in SILVER])))
    assert silver_layer(engine="databricks") == SILVER
    assert {r.headers["authorization"] for r in fake.requests} == {f"Bearer {SECRETS[0]}"}
    assert resolve_credentials(DatabricksSettings()).host == fake.host

    with pytest.raises(PipelineError, match="cannot load the DatabricksCredentials block 'no-such-block'") as raised:
        resolve_credentials(DatabricksSettings(credentials_block="no-such-block"))
    assert "\n" not in str(raised.value)


# --- the Spark job's own output, read back ----------------------------------------------------------


def test_the_jobs_own_output_comes_back_as_the_local_engines_artifacts(fake, spark, tmp_path, capsys):
    """tasks.spark.job on local Spark prints its summaries; served as the runs' output, the
    Databricks flows return and publish what the local engine's flows do on the same files."""
    from logistics_pipeline.datasets.generate import generate_datasets
    from logistics_pipeline.flows.bronze import bronze_layer
    from logistics_pipeline.flows.silver import silver_layer
    from logistics_pipeline.tasks.spark.job import main

    sources = tmp_path / "sources"
    generate_datasets(sources, scale=0.02, seed=11)
    target = ["--lake", str(tmp_path / "spark")]
    capsys.readouterr()
    main(["bronze", "--source-path", str(sources), *target], spark=spark)
    bronze_output = capsys.readouterr().out
    main(["silver", *target], spark=spark)
    silver_output = capsys.readouterr().out
    fake.outcomes.extend([Outcome(logs=bronze_output), Outcome(logs=silver_output)])

    remote_bronze = bronze_layer(engine="databricks", return_state=True)
    remote_silver = silver_layer(engine="databricks", return_state=True)
    lake = str(tmp_path / "local")
    local_bronze = bronze_layer(source_dir=str(sources), lake=lake, engine="local", return_state=True)
    local_silver = silver_layer(lake=lake, engine="local", return_state=True)

    csv_tables = [row for row in artifact(local_bronze, "bronze-layer") if row["table"] != "kafka_orders"]  # the landing folder is local only
    assert artifact(remote_bronze, "bronze-layer") == csv_tables and len(csv_tables) == 6
    assert remote_bronze.result() == {row["table"]: row["rows"] for row in csv_tables}
    assert sorted(map(str, artifact(remote_silver, "silver-layer"))) == sorted(map(str, artifact(local_silver, "silver-layer")))
    assert sorted(remote_silver.result(), key=str) == sorted(local_silver.result(), key=str)
