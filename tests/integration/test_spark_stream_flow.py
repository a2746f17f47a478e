"""The bronze-layer flow with engine=databricks runs the CSV bronze and then the stream as job
runs, on a real Prefect server; only the Databricks REST API is faked (respx, Jobs API 2.1 shapes)."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import httpx
import pytest
import respx

pytestmark = pytest.mark.usefixtures("prefect_server")

HOST = "dbc-1234abcd-5678.cloud.databricks.com"
API = f"https://{HOST}/api/2.1/jobs"
KAFKA = "pkc-12345.eu-west-1.aws.confluent.cloud:9092"
SECRETS = ("dapi-flow-TOKEN-s3cret", "kafka-flow-PASSWORD-s3cret", "kafka-flow-USER-s3cret")


@pytest.fixture
def databricks_env(monkeypatch):
    for name, value in {
        "DATABRICKS_HOST": HOST,
        "DATABRICKS_TOKEN": SECRETS[0],
        "LOGISTICS_DATABRICKS_POLL_FREQUENCY_SECONDS": "0.01",
        "LOGISTICS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "LOGISTICS_KAFKA_SASL_MECHANISM": "PLAIN",
        "LOGISTICS_KAFKA_PASSWORD": SECRETS[1],
        "LOGISTICS_KAFKA_USERNAME": SECRETS[2],
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("LOGISTICS_KAFKA_BOOTSTRAP_SERVERS", raising=False)


def finished_run(run_id: int, task_key: str) -> dict:
    """A runs/get answer for a one-time run that succeeded (the fields the client reads, as the API sends them)."""
    state = {"life_cycle_state": "TERMINATED", "result_state": "SUCCESS", "state_message": "", "user_cancelled_or_timedout": False}
    url = f"https://{HOST}/?o=1234567890123456#job/77/run/{run_id}"
    return {
        "job_id": 77, "run_id": run_id, "run_name": f"logistics-pipeline {task_key}", "run_page_url": url, "run_type": "SUBMIT_RUN",
        "state": state, "status": {"state": "TERMINATED", "termination_details": {"code": "SUCCESS", "type": "SUCCESS", "message": ""}},
        "tasks": [{"run_id": run_id + 1, "task_key": task_key, "state": dict(state), "run_page_url": url}],
        "start_time": 1_700_000_000_000, "end_time": 1_700_000_060_000,
    }


def run_bronze_layer(**parameters) -> list[dict]:
    """Run the flow against the fake Jobs API; returns the runs/submit bodies in order."""
    from prefect.settings import PREFECT_API_URL

    from logistics_pipeline.flows.bronze import bronze_layer

    runs = {}

    def submit(request: httpx.Request) -> httpx.Response:
        run_id = 1000 + len(runs)
        runs[run_id] = json.loads(request.content)
        return httpx.Response(200, json={"run_id": run_id})

    def get(request: httpx.Request) -> httpx.Response:
        run_id = int(request.url.params["run_id"])
        return httpx.Response(200, json=finished_run(run_id, runs[run_id]["tasks"][0]["task_key"]))

    with respx.mock(assert_all_called=False) as api:
        api.route(host=urlsplit(PREFECT_API_URL.value()).hostname).pass_through()  # the real Prefect server
        api.post(f"{API}/runs/submit").mock(side_effect=submit)
        api.get(f"{API}/runs/get").mock(side_effect=get)
        assert bronze_layer(engine="databricks", **parameters) == {}
    return list(runs.values())


def test_bronze_then_the_stream_with_the_secret_scope(databricks_env, monkeypatch):
    monkeypatch.setenv("LOGISTICS_DATABRICKS_KAFKA_SECRET_SCOPE", "kafka")
    bronze, stream = run_bronze_layer(bootstrap_servers=KAFKA)
    assert bronze["tasks"][0]["python_wheel_task"]["parameters"][0] == "bronze"
    parameters = stream["tasks"][0]["python_wheel_task"]["parameters"]
    assert parameters[0] == "stream" and stream["tasks"][0]["task_key"] == "stream"
    assert parameters[parameters.index("--bootstrap-servers") + 1] == KAFKA
    assert parameters[parameters.index("--kafka-secret-scope") + 1] == "kafka"
    assert bronze["idempotency_token"] != stream["idempotency_token"]
    sent = json.dumps([bronze, stream])
    assert not [secret for secret in SECRETS if secret in sent]


def test_without_kafka_only_the_csv_bronze_runs(databricks_env):
    [bronze] = run_bronze_layer()
    assert bronze["tasks"][0]["task_key"] == "bronze"
