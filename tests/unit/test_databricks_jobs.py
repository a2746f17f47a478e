"""The Databricks Jobs API 2.1 contract: submit or run-now, poll, fail, cancel, retry.

Only the Databricks REST API is faked (respx), with the request and response shapes of the real
runs/submit, run-now, runs/get and runs/cancel endpoints.
"""

from __future__ import annotations

import json
import logging
import os

import httpx
import pytest
import respx

from logistics_pipeline.tasks.databricks import jobs as databricks
from logistics_pipeline.tasks.databricks.jobs import (
    MISSING_CREDENTIALS,
    build_run_now_payload,
    build_submit_payload,
    idempotency_token,
    require_credentials,
    run_layer_on_databricks,
    stream_settings,
)
from logistics_pipeline.tasks.databricks.settings import DatabricksSettings
from logistics_pipeline.tasks.errors import PipelineError

HOST = "dbc-1234abcd-5678.cloud.databricks.com"
API = f"https://{HOST}/api/2.1/jobs"
TOKEN = "dapi0123456789abcdef-secret"
FLOW_RUN = "0f6d3c1e-8a4b-4c2d-9e5f-112233445566"
RUN_ID = 455644833
JOB_ID = 11223344
RUN_URL = f"https://{HOST}/?o=1234567890123456#job/{JOB_ID}/run/{RUN_ID}"
WHEEL = "/Volumes/main/logistics/artifacts/logistics_pipeline-0.1.0-py3-none-any.whl"


@pytest.fixture(autouse=True)
def _no_databricks_env(monkeypatch):
    """Tests see only the settings they pass, never this machine's Databricks environment."""
    for name in list(os.environ):
        if name.upper().startswith(("DATABRICKS_", "LOGISTICS_DATABRICKS_")):
            monkeypatch.delenv(name)


def make_settings(**overrides) -> DatabricksSettings:
    values = dict(host=HOST, token=TOKEN, poll_frequency_seconds=0.01, max_wait_seconds=10, api_backoff_seconds=0.0)
    return DatabricksSettings(**{**values, **overrides})


def run_json(life_cycle: str, result: str | None = None, message: str = "") -> dict:
    """A runs/get answer shaped like the real one (one-time run, one task)."""
    state = {"life_cycle_state": life_cycle, "state_message": message, "user_cancelled_or_timedout": False}
    status: dict = {"state": life_cycle}
    if result:
        state["result_state"] = result
        code = {"SUCCESS": "SUCCESS", "CANCELED": "CANCELED"}.get(result, "RUN_EXECUTION_ERROR")
        status["termination_details"] = {"code": code, "type": "SUCCESS" if result == "SUCCESS" else "CLIENT_ERROR", "message": message}
    terminated = life_cycle == "TERMINATED"
    return {
        "job_id": JOB_ID,
        "run_id": RUN_ID,
        "number_in_job": RUN_ID,
        "original_attempt_run_id": RUN_ID,
        "creator_user_name": "etl@example.com",
        "run_name": "logistics-pipeline bronze (flow run 0f6d3c1e)",
        "run_page_url": RUN_URL,
        "run_type": "SUBMIT_RUN",
        "trigger": "ONE_TIME",
        "format": "MULTI_TASK",
        "state": state,
        "status": status,
        "tasks": [{"run_id": RUN_ID + 1, "task_key": "bronze", "state": dict(state), "run_page_url": RUN_URL}],
        "start_time": 1_700_000_000_000,
        "setup_duration": 0,
        "execution_duration": 0,
        "cleanup_duration": 0,
        "end_time": 1_700_000_754_000 if terminated else 0,
    }


def ok(body: dict) -> httpx.Response:
    return httpx.Response(200, json=body)


def api_error(status: int, code: str, message: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error_code": code, "message": message}, headers=headers)


def body(call) -> dict:
    return json.loads(call.request.content)


# --- submit, poll, succeed / fail / time out --------------------------------------------------


def test_submit_pending_running_success(caplog):
    with respx.mock(assert_all_called=True) as api:
        submit = api.post(f"{API}/runs/submit").mock(return_value=ok({"run_id": RUN_ID}))
        get = api.get(f"{API}/runs/get").mock(
            side_effect=[
                ok(run_json("PENDING", message="Waiting for cluster")),
                ok(run_json("RUNNING", message="In run")),
                ok(run_json("TERMINATED", "SUCCESS")),
            ]
        )
        with caplog.at_level(logging.INFO):
            result = run_layer_on_databricks.fn("bronze", make_settings(), FLOW_RUN)

    assert result == {"run_id": RUN_ID, "run_page_url": RUN_URL, "result_state": "SUCCESS", "duration": 754.0}
    assert submit.call_count == 1 and get.call_count == 3
    sent = body(submit.calls[0])
    assert sent["idempotency_token"] == idempotency_token(FLOW_RUN, "bronze")
    assert sent["tasks"][0]["python_wheel_task"]["parameters"][0] == "bronze"
    assert submit.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert all(call.request.url.params["run_id"] == str(RUN_ID) for call in get.calls)
    assert RUN_URL in caplog.text
    assert TOKEN not in caplog.text


@pytest.mark.parametrize(
    ("life_cycle", "result", "message"),
    [
        ("TERMINATED", "FAILED", "Task bronze failed with message: Workload failed, see run output for details."),
        ("INTERNAL_ERROR", None, "Run failed due to an internal error in the Jobs service."),
        ("SKIPPED", None, "An active run of this job already exists."),
    ],
)
def test_failed_run_raises_state_message_and_url(life_cycle, result, message):
    with respx.mock(assert_all_called=True) as api:
        api.post(f"{API}/runs/submit").mock(return_value=ok({"run_id": RUN_ID}))
        api.get(f"{API}/runs/get").mock(side_effect=[ok(run_json("RUNNING")), ok(run_json(life_cycle, result, message))])
        with pytest.raises(PipelineError) as raised:
            run_layer_on_databricks.fn("bronze", make_settings(), FLOW_RUN)

    text = str(raised.value)
    assert message in text and RUN_URL in text and life_cycle in text
    assert "\n" not in text and TOKEN not in text


def test_timeout_cancels_the_run():
    with respx.mock(assert_all_called=True) as api:
        api.post(f"{API}/runs/submit").mock(return_value=ok({"run_id": RUN_ID}))
        api.get(f"{API}/runs/get").mock(return_value=ok(run_json("RUNNING", message="In run")))
        cancel = api.post(f"{API}/runs/cancel").mock(return_value=ok({}))
        with pytest.raises(PipelineError, match="cancelled after") as raised:
            run_layer_on_databricks.fn("silver", make_settings(max_wait_seconds=0.05, poll_frequency_seconds=0.05), FLOW_RUN)

    assert cancel.call_count == 1
    assert body(cancel.calls[0]) == {"run_id": RUN_ID}
    assert RUN_URL in str(raised.value)


def test_timeout_whose_cancel_fails_says_so():
    with respx.mock() as api:
        api.post(f"{API}/runs/submit").mock(return_value=ok({"run_id": RUN_ID}))
        api.get(f"{API}/runs/get").mock(return_value=ok(run_json("RUNNING")))
        api.post(f"{API}/runs/cancel").mock(return_value=api_error(403, "PERMISSION_DENIED", "no CAN_MANAGE_RUN"))
        with pytest.raises(PipelineError, match=r"cancelling it failed .*cancel it at " + RUN_URL.replace("?", r"\?")):
            run_layer_on_databricks.fn("bronze", make_settings(max_wait_seconds=0.05, poll_frequency_seconds=0.05), FLOW_RUN)


# --- retries ----------------------------------------------------------------------------------


def test_429_and_503_are_retried_with_the_same_idempotency_token(monkeypatch):
    delays: list[float] = []

    async def record(seconds: float) -> None:
        delays.append(seconds)

    monkeypatch.setattr(databricks, "_sleep", record)
    with respx.mock(assert_all_called=True) as api:
        submit = api.post(f"{API}/runs/submit").mock(
            side_effect=[
                api_error(429, "REQUEST_LIMIT_EXCEEDED", "Too many requests", **{"Retry-After": "7"}),
                api_error(503, "TEMPORARILY_UNAVAILABLE", "The service is temporarily unavailable"),
                ok({"run_id": RUN_ID}),
            ]
        )
        get = api.get(f"{API}/runs/get").mock(
            side_effect=[api_error(503, "TEMPORARILY_UNAVAILABLE", "try again"), ok(run_json("TERMINATED", "SUCCESS"))]
        )
        result = run_layer_on_databricks.fn("bronze", make_settings(api_backoff_seconds=0.5), FLOW_RUN)

    assert result["run_id"] == RUN_ID
    assert submit.call_count == 3 and get.call_count == 2
    assert delays == [7.0, 1.0, 0.5]  # Retry-After wins; otherwise 0.5 s doubling per retry of a request
    tokens = {body(call)["idempotency_token"] for call in submit.calls}
    assert tokens == {idempotency_token(FLOW_RUN, "bronze")}


def test_transport_errors_are_retried():
    with respx.mock(assert_all_called=True) as api:
        submit = api.post(f"{API}/runs/submit").mock(side_effect=[httpx.ConnectError("connection reset"), ok({"run_id": RUN_ID})])
        api.get(f"{API}/runs/get").mock(return_value=ok(run_json("TERMINATED", "SUCCESS")))
        run_layer_on_databricks.fn("bronze", make_settings(), FLOW_RUN)
    assert submit.call_count == 2
    assert body(submit.calls[0])["idempotency_token"] == body(submit.calls[1])["idempotency_token"]


def test_retries_are_bounded():
    with respx.mock() as api:
        submit = api.post(f"{API}/runs/submit").mock(return_value=api_error(503, "TEMPORARILY_UNAVAILABLE", "down"))
        with pytest.raises(PipelineError, match="503 TEMPORARILY_UNAVAILABLE: down .*gave up after 3 attempts"):
            run_layer_on_databricks.fn("bronze", make_settings(api_max_retries=2), FLOW_RUN)
    assert submit.call_count == 3


def test_400_is_not_retried():
    with respx.mock(assert_all_called=False) as api:
        submit = api.post(f"{API}/runs/submit").mock(
            return_value=api_error(400, "INVALID_PARAMETER_VALUE", "Cluster 0923-164208-meows279 does not exist")
        )
        get = api.get(f"{API}/runs/get")
        with pytest.raises(PipelineError, match="400 INVALID_PARAMETER_VALUE: Cluster 0923-164208-meows279 does not exist"):
            run_layer_on_databricks.fn("bronze", make_settings(), FLOW_RUN)
    assert submit.call_count == 1 and get.call_count == 0


# --- idempotency and run-now ------------------------------------------------------------------


def test_idempotency_token_is_stable_per_flow_run_and_layer():
    settings = make_settings()
    first = build_submit_payload("bronze", settings, FLOW_RUN)["idempotency_token"]
    assert build_submit_payload("bronze", settings, FLOW_RUN)["idempotency_token"] == first
    assert build_submit_payload("silver", settings, FLOW_RUN)["idempotency_token"] != first
    assert build_submit_payload("bronze", settings, "another-flow-run")["idempotency_token"] != first
    assert build_run_now_payload("bronze", make_settings(bronze_job_id=1), FLOW_RUN)["idempotency_token"] == first
    assert len(first) <= 64


def test_job_id_mode_calls_run_now_with_the_job_id():
    settings = make_settings(run_mode="job_id", bronze_job_id=111, silver_job_id=JOB_ID, catalog="prod", schema_name="orders")
    with respx.mock(assert_all_called=False) as api:
        submit = api.post(f"{API}/runs/submit")
        run_now = api.post(f"{API}/run-now").mock(return_value=ok({"run_id": RUN_ID, "number_in_job": 7}))
        api.get(f"{API}/runs/get").mock(return_value=ok(run_json("TERMINATED", "SUCCESS")))
        result = run_layer_on_databricks.fn("silver", settings, FLOW_RUN)

    assert result["run_id"] == RUN_ID and submit.call_count == 0
    assert body(run_now.calls[0]) == {
        "job_id": JOB_ID,
        "idempotency_token": idempotency_token(FLOW_RUN, "silver"),
        "job_parameters": {"catalog": "prod", "schema": "orders", "source_path": "/Volumes/main/logistics/landing"},
    }


def test_job_id_mode_without_a_job_id_says_which_setting():
    with pytest.raises(PipelineError, match="LOGISTICS_DATABRICKS_BRONZE_JOB_ID"):
        build_run_now_payload("bronze", make_settings(run_mode="job_id"), FLOW_RUN)


# --- the job spec for each compute and task type ---------------------------------------------


def _task(payload: dict) -> dict:
    assert payload["run_name"].startswith("logistics-pipeline bronze")
    assert payload["timeout_seconds"] == 10
    [task] = payload["tasks"]
    assert task["task_key"] == "bronze"
    return task


def test_wheel_task_on_existing_cluster():
    settings = make_settings(compute="existing_cluster", existing_cluster_id="0923-164208-meows279")
    task = _task(build_submit_payload("bronze", settings, FLOW_RUN))
    assert task == {
        "task_key": "bronze",
        "existing_cluster_id": "0923-164208-meows279",
        "libraries": [{"whl": WHEEL}],
        "python_wheel_task": {
            "package_name": "logistics_pipeline",
            "entry_point": "logistics-spark",
            "parameters": ["bronze", "--catalog", "main", "--schema", "logistics", "--source-path", "/Volumes/main/logistics/landing"],
        },
    }


def test_spark_python_task_on_new_cluster():
    settings = make_settings(
        compute="new_cluster", new_cluster_node_type_id="i3.xlarge", new_cluster_num_workers=4,
        task_type="spark_python", python_file="/Volumes/main/logistics/artifacts/spark_entrypoint.py",
    )
    task = _task(build_submit_payload("bronze", settings, FLOW_RUN))
    assert task["new_cluster"] == {
        "spark_version": "15.4.x-scala2.12", "node_type_id": "i3.xlarge", "num_workers": 4, "data_security_mode": "SINGLE_USER",
    }
    assert task["libraries"] == [{"whl": WHEEL}]
    assert task["spark_python_task"]["python_file"] == "/Volumes/main/logistics/artifacts/spark_entrypoint.py"
    assert task["spark_python_task"]["parameters"][:3] == ["bronze", "--catalog", "main"]
    assert "python_wheel_task" not in task and "existing_cluster_id" not in task


@pytest.mark.parametrize("task_type", ["python_wheel", "spark_python"])
def test_serverless_uses_an_environment_with_the_wheel(task_type):
    settings = make_settings(compute="serverless", task_type=task_type, python_file="/Workspace/Shared/logistics/spark_entrypoint.py")
    payload = build_submit_payload("bronze", settings, FLOW_RUN)
    task = _task(payload)
    assert payload["environments"] == [{"environment_key": "logistics", "spec": {"environment_version": "2", "dependencies": [WHEEL]}}]
    assert task["environment_key"] == "logistics"
    assert f"{task_type}_task" in task
    assert not {"existing_cluster_id", "new_cluster", "libraries"} & task.keys()


def test_silver_gets_no_source_path():
    params = build_submit_payload("silver", make_settings(), FLOW_RUN)["tasks"][0]["python_wheel_task"]["parameters"]
    assert params == ["silver", "--catalog", "main", "--schema", "logistics"]


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"compute": "existing_cluster"}, "LOGISTICS_DATABRICKS_EXISTING_CLUSTER_ID"),
        ({"compute": "new_cluster"}, "LOGISTICS_DATABRICKS_NEW_CLUSTER_NODE_TYPE_ID"),
        ({"task_type": "spark_python"}, "LOGISTICS_DATABRICKS_PYTHON_FILE"),
    ],
)
def test_incomplete_spec_names_the_missing_setting(overrides, setting):
    with pytest.raises(PipelineError, match=setting):
        build_submit_payload("bronze", make_settings(**overrides), FLOW_RUN)


# --- settings and credentials ------------------------------------------------------------------------------


def test_settings_defaults_and_env_names(monkeypatch):
    defaults = DatabricksSettings()
    assert (defaults.run_mode, defaults.compute, defaults.task_type) == ("submit", "serverless", "python_wheel")
    assert defaults.max_wait_seconds == 3 * 60 * 60 and defaults.poll_frequency_seconds == 30
    monkeypatch.setenv("LOGISTICS_DATABRICKS_SCHEMA", "orders")
    monkeypatch.setenv("LOGISTICS_DATABRICKS_COMPUTE", "existing_cluster")
    monkeypatch.setenv("LOGISTICS_DATABRICKS_EXISTING_CLUSTER_ID", "0923-164208-meows279")
    monkeypatch.setenv("LOGISTICS_DATABRICKS_RUN_MODE", "job_id")
    monkeypatch.setenv("LOGISTICS_DATABRICKS_BRONZE_JOB_ID", "42")
    monkeypatch.setenv("LOGISTICS_DATABRICKS_MAX_WAIT_SECONDS", "600")
    monkeypatch.setenv("LOGISTICS_DATABRICKS_HOST", HOST)
    settings = DatabricksSettings()
    assert (settings.schema_name, settings.compute, settings.existing_cluster_id) == ("orders", "existing_cluster", "0923-164208-meows279")
    assert (settings.run_mode, settings.bronze_job_id, settings.max_wait_seconds, settings.host) == ("job_id", 42, 600, HOST)


def test_missing_credentials_is_one_line():
    with pytest.raises(PipelineError) as raised:
        require_credentials(DatabricksSettings())
    assert str(raised.value) == MISSING_CREDENTIALS
    assert "\n" not in MISSING_CREDENTIALS
    assert "LOGISTICS_DATABRICKS_CREDENTIALS_BLOCK" in MISSING_CREDENTIALS and "DATABRICKS_TOKEN" in MISSING_CREDENTIALS


def test_run_without_credentials_fails_before_any_request():
    with respx.mock() as api, pytest.raises(PipelineError, match="needs Databricks credentials"):
        run_layer_on_databricks.fn("bronze", DatabricksSettings(), FLOW_RUN)
    assert not api.calls


def test_env_host_and_token_build_a_block(monkeypatch):
    monkeypatch.setenv("DATABRICKS_HOST", f"https://{HOST}/")
    monkeypatch.setenv("DATABRICKS_TOKEN", TOKEN)
    credentials = require_credentials(DatabricksSettings())
    assert credentials.databricks_instance == HOST
    assert credentials.token.get_secret_value() == TOKEN
    assert TOKEN not in repr(DatabricksSettings()) and TOKEN not in repr(credentials)


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"DATABRICKS_HOST": HOST}, "DATABRICKS_HOST is set but not how to sign in"),
        ({"DATABRICKS_TOKEN": TOKEN}, "set DATABRICKS_HOST"),
        ({"DATABRICKS_HOST": HOST, "DATABRICKS_CLIENT_ID": "sp-id"}, "needs both DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET"),
        ({"DATABRICKS_HOST": HOST, "DATABRICKS_TOKEN": TOKEN, "DATABRICKS_CLIENT_ID": "a", "DATABRICKS_CLIENT_SECRET": "b"}, "not both"),
    ],
)
def test_incomplete_credentials_say_what_is_missing(monkeypatch, env, complaint):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(PipelineError, match=complaint) as raised:
        require_credentials(DatabricksSettings())
    assert TOKEN not in str(raised.value) and "\n" not in str(raised.value)


def test_service_principal_signs_in_with_oauth(monkeypatch):
    monkeypatch.setenv("DATABRICKS_HOST", HOST)
    monkeypatch.setenv("DATABRICKS_CLIENT_ID", "6f1c0b6e-sp")
    monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", "dose-secret")
    settings = DatabricksSettings(poll_frequency_seconds=0.01)
    with respx.mock(assert_all_called=True) as api:
        oidc = api.post(f"https://{HOST}/oidc/v1/token").mock(
            return_value=ok({"access_token": "oauth-access-token", "token_type": "Bearer", "expires_in": 3600})
        )
        submit = api.post(f"{API}/runs/submit").mock(return_value=ok({"run_id": RUN_ID}))
        api.get(f"{API}/runs/get").mock(return_value=ok(run_json("TERMINATED", "SUCCESS")))
        run_layer_on_databricks.fn("bronze", settings, FLOW_RUN)
    assert submit.calls[0].request.headers["Authorization"] == "Bearer oauth-access-token"
    assert oidc.calls[0].request.content == b"grant_type=client_credentials&scope=all-apis"
    assert oidc.calls[0].request.headers["Authorization"].startswith("Basic ")


def test_saved_block_is_loaded_by_name(monkeypatch):
    from prefect_databricks import DatabricksCredentials

    loaded = []

    def fake_load(name, **kwargs):
        loaded.append(name)
        return DatabricksCredentials(databricks_instance=f"https://{HOST}", token=TOKEN)

    monkeypatch.setattr(DatabricksCredentials, "load", fake_load)
    credentials = require_credentials(DatabricksSettings(credentials_block="databricks-prod"))
    assert loaded == ["databricks-prod"] and credentials.databricks_instance == HOST


def test_a_block_that_cannot_be_loaded_is_one_line(monkeypatch):
    from prefect_databricks import DatabricksCredentials

    def missing(name, **kwargs):
        raise ValueError(f"Unable to find block document named {name} for block type databricks-credentials")

    monkeypatch.setattr(DatabricksCredentials, "load", missing)
    with pytest.raises(PipelineError, match="cannot load the DatabricksCredentials block 'nope'") as raised:
        require_credentials(DatabricksSettings(credentials_block="nope"))
    assert "\n" not in str(raised.value)


# --- the order stream ----------------------------------------------------------------------------

KAFKA = "pkc-12345.eu-west-1.aws.confluent.cloud:9092"
KAFKA_PASSWORD = "kafka-s3cret-PASSWORD"
KAFKA_USERNAME = "KAFKAAPIKEY123"


def sasl_connection():
    from pydantic import SecretStr

    from logistics_pipeline.tasks.kafka.connection import KafkaConnection

    return KafkaConnection(
        bootstrap_servers=KAFKA, security_protocol="SASL_SSL", sasl_mechanism="PLAIN",
        username=SecretStr(KAFKA_USERNAME), password=SecretStr(KAFKA_PASSWORD),
    )


def test_stream_task_runs_the_entrypoint_with_the_secret_scope_not_the_secret():
    settings = stream_settings(make_settings(kafka_secret_scope="kafka"), sasl_connection(), "orders")
    payload = build_submit_payload("stream", settings, FLOW_RUN)
    [task] = payload["tasks"]
    assert task["task_key"] == "stream" and payload["run_name"].startswith("logistics-pipeline stream")
    assert task["python_wheel_task"]["parameters"] == [
        "stream", "--catalog", "main", "--schema", "logistics",
        "--bootstrap-servers", KAFKA, "--topic", "orders",
        "--checkpoint", "/Volumes/main/logistics/checkpoints/kafka_orders",
        "--security-protocol", "SASL_SSL", "--sasl-mechanism", "PLAIN", "--kafka-secret-scope", "kafka",
    ]
    assert payload["idempotency_token"] == idempotency_token(FLOW_RUN, "stream") != idempotency_token(FLOW_RUN, "bronze")
    sent = json.dumps(payload)
    assert KAFKA_PASSWORD not in sent and KAFKA_USERNAME not in sent


def test_stream_settings_for_databricks_win_over_the_pipelines():
    databricks = make_settings(
        kafka_bootstrap_servers="10.0.0.5:9092", kafka_topic="orders-prod", kafka_security_protocol="PLAINTEXT",
        stream_checkpoint="abfss://lake@acct.dfs.core.windows.net/checkpoints/orders",
    )
    settings = stream_settings(databricks, sasl_connection(), "orders")
    params = build_submit_payload("stream", settings, FLOW_RUN)["tasks"][0]["python_wheel_task"]["parameters"]
    assert params[5:] == [
        "--bootstrap-servers", "10.0.0.5:9092", "--topic", "orders-prod",
        "--checkpoint", "abfss://lake@acct.dfs.core.windows.net/checkpoints/orders", "--security-protocol", "PLAINTEXT",
        "--sasl-mechanism", "PLAIN",
    ]


def test_no_kafka_no_stream_run():
    assert stream_settings(make_settings(), None, "orders") is None
    assert stream_settings(make_settings(kafka_bootstrap_servers=KAFKA, run_stream=False), None, "orders") is None


def test_sasl_without_a_secret_scope_is_refused_before_any_run():
    with pytest.raises(PipelineError, match="LOGISTICS_DATABRICKS_KAFKA_SECRET_SCOPE") as raised:
        stream_settings(make_settings(), sasl_connection(), "orders")
    assert KAFKA_PASSWORD not in str(raised.value)


def test_stream_job_id_mode_passes_the_stream_parameters():
    settings = stream_settings(make_settings(run_mode="job_id", stream_job_id=JOB_ID, kafka_secret_scope="kafka"), sasl_connection(), "orders")
    with respx.mock(assert_all_called=True) as api:
        run_now = api.post(f"{API}/run-now").mock(return_value=ok({"run_id": RUN_ID, "number_in_job": 3}))
        api.get(f"{API}/runs/get").mock(return_value=ok(run_json("TERMINATED", "SUCCESS")))
        run_layer_on_databricks.fn("stream", settings, FLOW_RUN)
    assert body(run_now.calls[0]) == {
        "job_id": JOB_ID,
        "idempotency_token": idempotency_token(FLOW_RUN, "stream"),
        "job_parameters": {
            "catalog": "main", "schema": "logistics", "bootstrap_servers": KAFKA, "topic": "orders",
            "checkpoint": "/Volumes/main/logistics/checkpoints/kafka_orders", "security_protocol": "SASL_SSL",
            "sasl_mechanism": "PLAIN", "kafka_secret_scope": "kafka",
        },
    }
    with pytest.raises(PipelineError, match="LOGISTICS_DATABRICKS_STREAM_JOB_ID"):
        build_run_now_payload("stream", make_settings(run_mode="job_id", kafka_bootstrap_servers=KAFKA), FLOW_RUN)


def test_stream_run_submits_and_waits_like_the_other_layers():
    settings = stream_settings(make_settings(kafka_bootstrap_servers=KAFKA), None, "orders")
    with respx.mock(assert_all_called=True) as api:
        submit = api.post(f"{API}/runs/submit").mock(return_value=ok({"run_id": RUN_ID}))
        api.get(f"{API}/runs/get").mock(side_effect=[ok(run_json("RUNNING")), ok(run_json("TERMINATED", "SUCCESS"))])
        result = run_layer_on_databricks.fn("stream", settings, FLOW_RUN)
    assert result["result_state"] == "SUCCESS"
    assert body(submit.calls[0])["tasks"][0]["python_wheel_task"]["parameters"][:2] == ["stream", "--catalog"]
