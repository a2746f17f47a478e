"""The Databricks Jobs API 2.2 contract, through the real databricks-sdk over real HTTPS: submit
or run-now, poll, read the summary, fail, cancel, and retries that retry.

Only the Databricks REST API is faked (``tests.fake_databricks``: a stateful server on
127.0.0.1 answering in the shapes of the SDK's own dataclasses). The SDK's retry backoff runs
on a clock that does not sleep, and the poll interval is a millisecond, so nothing here waits.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict

import pytest
from databricks.sdk.service import jobs

from logistics_pipeline.tasks.core.quality import TableCounts
from logistics_pipeline.tasks.databricks.credentials import MISSING_CREDENTIALS, DatabricksAuth, bare_host, resolve_credentials, sdk_config, workspace_client
from logistics_pipeline.tasks.databricks.jobs import (
    entrypoint_parameters,
    idempotency_token,
    require_credentials,
    run_layer,
    run_layer_on_databricks,
    run_now_request,
    stream_settings,
    submit_request,
)
from logistics_pipeline.tasks.databricks.output import bronze_tables, job_error, job_summary, silver_counts
from logistics_pipeline.tasks.databricks.settings import DatabricksSettings
from logistics_pipeline.tasks.errors import PipelineError
from tests.fake_databricks import CANCEL, GET, OUTPUT, RUN_NOW, SUBMIT, FakeDatabricks, InstantClock, Outcome

TOKEN = "dapi0123456789abcdef-secret"
FLOW_RUN = "0f6d3c1e-8a4b-4c2d-9e5f-112233445566"
JOB_ID = 11223344
WHEEL = "/Volumes/main/logistics/artifacts/logistics_pipeline_job-0.1.0+3f9c2ab-py3-none-any.whl"
LOG = logging.getLogger("test-databricks")

SILVER = [TableCounts("crm_cust_info", 18494, 18484, 3, 7), TableCounts("erp_loc_a101", 18484, 18484, 0, 0)]
BRONZE = [{"table": "crm_cust_info", "rows": 18494, "batch_id": "crm_cust_info-3f9c", "skipped": False},
          {"table": "erp_loc_a101", "rows": 18484, "batch_id": "erp_loc_a101-77aa", "skipped": True}]


def job_output(layer: str, tables: list[dict], failed: tuple[str, ...] = ()) -> str:
    """What tasks.spark.job prints: Spark's chatter, then the summary as the last line."""
    summary = json.dumps({"layer": layer, "tables": tables, "failed": list(failed)})
    return f"WARNING: Using incubator modules: jdk.incubator.vector\n{{not json}}\n{summary}\n"


@pytest.fixture(autouse=True)
def _no_databricks_env(monkeypatch):
    """Tests see only the settings they pass, never this machine's Databricks environment."""
    for name in list(os.environ):
        if name.upper().startswith(("DATABRICKS_", "LOGISTICS_DATABRICKS_")):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def server():
    with FakeDatabricks(token=TOKEN) as fake:
        yield fake


@pytest.fixture
def fake(server, monkeypatch) -> FakeDatabricks:
    server.reset()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", server.ca_file)  # the SDK trusts the fake's certificate
    return server


def make_settings(fake: FakeDatabricks | None = None, **overrides) -> DatabricksSettings:
    values = dict(
        host=fake.host if fake else "dbc-1234abcd-5678.cloud.databricks.com", token=TOKEN, wheel_path=WHEEL,
        poll_frequency_seconds=0.001, max_wait_seconds=10, api_retry_timeout_seconds=30,
    )
    return DatabricksSettings(**{**values, **overrides})


def run(settings: DatabricksSettings, layer: str = "bronze", clock: InstantClock | None = None) -> dict:
    """One call of the layer's Prefect task body (a Prefect retry is another call)."""
    return run_layer(workspace_client(settings, clock or InstantClock()), layer, settings, FLOW_RUN, LOG)


def tokens(fake: FakeDatabricks, path: str = SUBMIT) -> list[str]:
    return [body["idempotency_token"] for body in fake.bodies(path)]


# --- submit, poll, the summary ----------------------------------------------------------------


def test_submit_polls_until_terminated_and_returns_the_jobs_summary(fake, caplog):
    fake.outcomes.append(Outcome(logs=job_output("bronze", BRONZE)))
    with caplog.at_level(logging.INFO, logger=LOG.name):
        result = run(make_settings(fake))

    [created] = fake.runs.values()
    [task_run] = created.tasks
    assert result["summary"] == {"layer": "bronze", "tables": BRONZE, "failed": []}
    assert (result["run_id"], result["result_state"], result["duration"]) == (created.run_id, "SUCCESS", 754.0)
    assert result["run_page_url"] == fake.run_page_url(created)
    assert len(fake.sent("GET", GET)) == 3  # PENDING, RUNNING, TERMINATED
    assert [r.query["run_id"] for r in fake.sent("GET", OUTPUT)] == [str(task_run["run_id"])]  # the task run, not the run
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in fake.requests)
    assert fake.bodies(SUBMIT)[0]["idempotency_token"] == idempotency_token(FLOW_RUN, "bronze", 0)
    assert "PENDING (Waiting for cluster)" in caplog.text and "RUNNING" in caplog.text and fake.run_page_url(created) in caplog.text


def test_the_fakes_answers_are_the_sdks_shapes(fake):
    """Every runs/get and get-output answer reads into the SDK's dataclasses and back unchanged."""
    fake.outcomes.extend([Outcome(logs=job_output("bronze", BRONZE)), Outcome("FAILED", "boom", "error: boom\n")])
    run(make_settings(fake))
    with pytest.raises(PipelineError):
        run(make_settings(fake), layer="silver")
    for created in fake.runs.values():
        for polls in range(4):
            created.polls = polls
            answer = fake.run_json(created)
            assert jobs.Run.from_dict(answer).as_dict() == answer
        task_answer = fake.output_json(created.tasks[0]["run_id"])
        assert jobs.RunOutput.from_dict(task_answer).as_dict() == task_answer


def test_success_without_a_summary_line_is_one_line(fake):
    fake.outcomes.append(Outcome(logs="Hello from a script that is not the entry point\n"))
    with pytest.raises(PipelineError, match="succeeded but its output holds no bronze summary line") as raised:
        run(make_settings(fake))
    assert fake.run_page_url(next(iter(fake.runs.values()))) in str(raised.value) and "\n" not in str(raised.value)


# --- retries that retry -------------------------------------------------------------------------


@pytest.mark.parametrize("result", ["FAILED", "TIMEDOUT", "CANCELED"])
def test_a_failed_run_then_a_retry_starts_a_second_run(fake, result):
    fake.outcomes.extend([
        Outcome(result, "Task bronze failed with message: Workload failed, see run output for details.",
                logs="py4j chatter\nerror: source_crm/cust_info.csv: line 3: 4 fields, the header has 7\n"),
        Outcome(logs=job_output("bronze", BRONZE)),
    ])
    settings = make_settings(fake)
    with pytest.raises(PipelineError) as raised:
        run(settings)
    first = next(iter(fake.runs.values()))
    message = str(raised.value)
    assert message == (
        f"Databricks bronze run {first.run_id} ended TERMINATED/{result}: "
        f"source_crm/cust_info.csv: line 3: 4 fields, the header has 7 - see {fake.run_page_url(first)}"
    )

    retried = run(settings)  # the Prefect retry: the same flow run, the same layer

    assert len(fake.runs) == 2 and retried["run_id"] != first.run_id
    assert retried["summary"]["tables"] == BRONZE
    attempt = [idempotency_token(FLOW_RUN, "bronze", n) for n in range(2)]
    assert tokens(fake) == [attempt[0], attempt[0], attempt[1]]  # attempt 1's run ended: attempt 2 is a new run


def test_a_retry_after_success_takes_the_finished_runs_result(fake):
    """A re-run of the parent flow run after a later layer failed does not run bronze again."""
    fake.outcomes.append(Outcome(logs=job_output("bronze", BRONZE)))
    first = run(make_settings(fake))
    again = run(make_settings(fake))
    assert len(fake.runs) == 1 and again == first


def test_a_lost_response_is_retried_by_the_sdk_and_attaches_to_the_run(fake):
    fake.outcomes.append(Outcome(logs=job_output("bronze", BRONZE)))
    fake.fail_next("POST", SUBMIT, "drop")  # the run is created, the answer never arrives
    result = run(make_settings(fake))
    assert len(fake.runs) == 1 and result["run_id"] in fake.runs
    assert tokens(fake) == [idempotency_token(FLOW_RUN, "bronze", 0)] * 2


def test_a_lost_response_then_a_retry_attaches_to_the_same_run(fake):
    """The SDK gives up (the network is gone for longer than api_retry_timeout_seconds); the
    Prefect retry finds the run the lost request started and waits for it."""
    fake.outcomes.append(Outcome(logs=job_output("bronze", BRONZE)))
    fake.fail_next("POST", SUBMIT, *["drop"] * 20)
    settings = make_settings(fake, api_retry_timeout_seconds=5)
    with pytest.raises(PipelineError, match=r"runs/submit \(bronze\) failed \(gave up retrying: Timed out after 0:00:05\): ConnectionError") as raised:
        run(settings)
    assert "\n" not in str(raised.value)
    [started] = fake.runs.values()

    fake.faults.clear()
    result = run(settings)
    assert list(fake.runs) == [started.run_id] == [result["run_id"]]
    assert result["summary"]["tables"] == BRONZE


def test_lost_contact_while_waiting_then_a_retry_attaches_to_the_same_run(fake):
    fake.outcomes.append(Outcome(logs=job_output("bronze", BRONZE)))
    fake.fail_next("GET", GET, "ok", *["drop"] * 20)  # the first poll is answered, then the network is gone
    settings = make_settings(fake, api_retry_timeout_seconds=5)
    with pytest.raises(PipelineError, match=r"lost contact with Databricks while waiting for bronze run \d+ https://\S+, which may still be running"):
        run(settings)
    [started] = fake.runs.values()

    fake.faults.clear()
    assert run(settings)["run_id"] == started.run_id and len(fake.runs) == 1


def test_429_and_503_are_retried_by_the_sdk_with_the_same_token(fake):
    fake.outcomes.append(Outcome(logs=job_output("bronze", BRONZE)))
    fake.fail_next("POST", SUBMIT, "429", "503")
    fake.fail_next("GET", GET, "503")
    clock = InstantClock()
    result = run(make_settings(fake), clock=clock)
    assert result["result_state"] == "SUCCESS" and len(fake.runs) == 1
    assert len(fake.sent("POST", SUBMIT)) == 3 and set(tokens(fake)) == {idempotency_token(FLOW_RUN, "bronze", 0)}
    assert len(clock.sleeps) == 3 and 7 <= clock.sleeps[0] < 8  # the 429's Retry-After: 7


def test_a_400_is_not_retried_and_is_one_line(fake):
    settings = make_settings(fake, run_mode="job_id", bronze_job_id=999)
    with pytest.raises(PipelineError) as raised:
        run(settings)
    assert str(raised.value) == "Databricks run-now of job 999 (bronze) failed: INVALID_PARAMETER_VALUE: Job 999 does not exist."
    assert len(fake.sent("POST", RUN_NOW)) == 1 and not fake.runs


def test_idempotency_token_per_flow_run_layer_and_attempt():
    first = idempotency_token(FLOW_RUN, "bronze", 0)
    assert idempotency_token(FLOW_RUN, "bronze", 0) == first
    assert len({first, idempotency_token(FLOW_RUN, "silver", 0), idempotency_token("another", "bronze", 0), idempotency_token(FLOW_RUN, "bronze", 1)}) == 4
    assert len(first) <= 64
    assert submit_request("bronze", make_settings(), FLOW_RUN, 3)["idempotency_token"] == idempotency_token(FLOW_RUN, "bronze", 3)


# --- cancel after max_wait ------------------------------------------------------------------------


def test_a_run_that_outlives_max_wait_is_cancelled(fake):
    fake.outcomes.append(Outcome(hold=True))
    with pytest.raises(PipelineError, match="was cancelled after 0 s .max_wait_seconds=0.05. while RUNNING") as raised:
        run(make_settings(fake, max_wait_seconds=0.05, poll_frequency_seconds=0.01), layer="silver")
    [held] = fake.runs.values()
    assert fake.bodies(CANCEL) == [{"run_id": held.run_id}] and held.cancelled
    assert fake.run_page_url(held) in str(raised.value)
    assert fake.bodies(SUBMIT)[0]["timeout_seconds"] == 1  # Databricks enforces max_wait too


def test_a_cancel_that_fails_says_where_to_cancel(fake):
    fake.outcomes.append(Outcome(hold=True))
    fake.fail_next("POST", CANCEL, *["503"] * 10)
    settings = make_settings(fake, max_wait_seconds=0.05, poll_frequency_seconds=0.01, api_retry_timeout_seconds=3)
    with pytest.raises(PipelineError, match=r"did not finish within 0.05 s and cancelling it failed .*: cancel it at https://") as raised:
        run(settings)
    assert "\n" not in str(raised.value) and not next(iter(fake.runs.values())).cancelled


# --- secrets --------------------------------------------------------------------------------------


def test_the_token_is_never_in_logs_or_errors(fake, caplog):
    fake.outcomes.append(Outcome("FAILED", "Workload failed", logs="error: boom\n"))
    with caplog.at_level(logging.DEBUG), pytest.raises(PipelineError) as failed:
        run(make_settings(fake))
    with caplog.at_level(logging.DEBUG), pytest.raises(PipelineError) as refused:
        run(make_settings(fake, token="dapi-wrong-TOKEN-s3cret"))
    assert any(record.name.startswith("databricks.sdk") for record in caplog.records)  # the SDK's debug log was on
    assert str(refused.value).startswith("Databricks runs/submit (bronze) failed: UNAUTHENTICATED: Invalid access token.")
    assert str(refused.value).endswith("(check the Databricks credentials and their permissions)") and "\n" not in str(refused.value)
    for text in (caplog.text, str(failed.value), str(refused.value), repr(make_settings(fake))):
        assert TOKEN not in text and "dapi-wrong-TOKEN-s3cret" not in text


# --- the job spec: serverless, job clusters, run-now ---------------------------------------------------


@pytest.mark.parametrize("task_type", ["python_wheel", "spark_python"])
def test_serverless_runs_in_environment_4_with_the_wheel(fake, task_type):
    fake.outcomes.append(Outcome(logs=job_output("bronze", BRONZE)))
    run(make_settings(fake, compute="serverless", task_type=task_type, python_file="/Workspace/Shared/logistics/spark_job.py"))
    [body] = fake.bodies(SUBMIT)
    assert body["environments"] == [{"environment_key": "logistics", "spec": {"environment_version": "4", "dependencies": [WHEEL]}}]
    [task] = body["tasks"]
    assert task["environment_key"] == "logistics" and f"{task_type}_task" in task
    assert not {"existing_cluster_id", "new_cluster", "libraries"} & task.keys()
    assert body["run_name"] == "logistics-pipeline bronze (flow run 0f6d3c1e)" and body["timeout_seconds"] == 10


def test_a_job_cluster_runs_dbr_17_3_with_the_wheel_as_a_library(fake):
    fake.outcomes.append(Outcome(logs=job_output("bronze", BRONZE)))
    run(make_settings(fake, compute="new_cluster", new_cluster_node_type_id="i3.xlarge", new_cluster_num_workers=4))
    [task] = fake.bodies(SUBMIT)[0]["tasks"]
    assert task["new_cluster"] == {"spark_version": "17.3.x-scala2.13", "node_type_id": "i3.xlarge", "num_workers": 4, "data_security_mode": "SINGLE_USER"}
    assert task["libraries"] == [{"whl": WHEEL}]
    assert task["python_wheel_task"] == {
        "package_name": "logistics_pipeline_job", "entry_point": "logistics-spark",
        "parameters": ["bronze", "--catalog", "main", "--schema", "logistics", "--source-path", "/Volumes/main/logistics/landing"],
    }
    assert "environments" not in fake.bodies(SUBMIT)[0]


def test_an_existing_cluster_gets_the_wheel_and_silver_no_source_path(fake):
    fake.outcomes.append(Outcome(logs=job_output("silver", [asdict(c) for c in SILVER])))
    result = run(make_settings(fake, compute="existing_cluster", existing_cluster_id="0923-164208-meows279"), layer="silver")
    [task] = fake.bodies(SUBMIT)[0]["tasks"]
    assert task["existing_cluster_id"] == "0923-164208-meows279" and task["libraries"] == [{"whl": WHEEL}]
    assert task["python_wheel_task"]["parameters"] == ["silver", "--catalog", "main", "--schema", "logistics", "--run-id", "{{job.run_id}}"]
    assert silver_counts(result["summary"]) == SILVER


def test_run_now_starts_the_job_and_reads_the_layers_task(fake):
    """A job with every layer as a task (the bundle's): run-now with the job id and parameters;
    the summary is the output of the task keyed by the layer."""
    fake.jobs[JOB_ID] = ["bronze", "stream", "silver", "gold"]
    fake.outcomes.append(Outcome(logs=job_output("silver", [asdict(c) for c in SILVER])))
    settings = make_settings(fake, run_mode="job_id", bronze_job_id=111, silver_job_id=JOB_ID, catalog="prod", schema_name="orders", wheel_path=None)
    result = run(settings, layer="silver")

    assert not fake.sent("POST", SUBMIT)
    assert fake.bodies(RUN_NOW) == [{
        "job_id": JOB_ID, "idempotency_token": idempotency_token(FLOW_RUN, "silver", 0),
        "job_parameters": {"catalog": "prod", "schema": "orders", "source_path": "/Volumes/main/logistics/landing"},
    }]
    [created] = fake.runs.values()
    silver_task = next(t for t in created.tasks if t["task_key"] == "silver")
    assert [r.query["run_id"] for r in fake.sent("GET", OUTPUT)] == [str(silver_task["run_id"])]
    assert silver_counts(result["summary"]) == SILVER


def test_the_bundles_job_runs_only_the_layers_task(fake):
    """job_id is the bundle's job (every layer and gold): each layer runs just its own task."""
    fake.jobs[JOB_ID] = ["bronze", "stream", "silver", "gold"]
    fake.outcomes.append(Outcome(logs=job_output("silver", [asdict(c) for c in SILVER])))
    result = run(make_settings(fake, run_mode="job_id", job_id=JOB_ID, wheel_path=None), layer="silver")

    [body] = fake.bodies(RUN_NOW)
    assert (body["job_id"], body["only"]) == (JOB_ID, ["silver"])
    [created] = fake.runs.values()
    assert [task["task_key"] for task in created.tasks] == ["silver"]
    assert silver_counts(result["summary"]) == SILVER


def test_job_id_mode_without_a_job_id_says_which_setting():
    with pytest.raises(PipelineError, match="LOGISTICS_DATABRICKS_JOB_ID .the bundle's job. or LOGISTICS_DATABRICKS_BRONZE_JOB_ID"):
        run_now_request("bronze", make_settings(run_mode="job_id"), FLOW_RUN, 0)


def test_submit_without_a_wheel_names_the_setting():
    with pytest.raises(PipelineError, match="set LOGISTICS_DATABRICKS_WHEEL_PATH") as raised:
        submit_request("bronze", make_settings(wheel_path=None), FLOW_RUN, 0)
    assert "make job-wheel" in str(raised.value) and "\n" not in str(raised.value)


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
        submit_request("bronze", make_settings(**overrides), FLOW_RUN, 0)


# --- the job's summary ------------------------------------------------------------------------------


def test_the_summary_is_the_last_json_line_of_the_layer():
    logs = job_output("silver", [asdict(c) for c in SILVER]) + "24/12/05 10:00:01 INFO SparkContext: Successfully stopped SparkContext\n"
    assert job_summary(logs, "silver") == json.loads(json.dumps({"layer": "silver", "tables": [asdict(c) for c in SILVER], "failed": []}))
    assert job_summary(logs, "bronze") is None and job_summary(None, "silver") is None
    assert job_error("chatter\nerror: first\nmore\nerror: the   job's\treason\n") == "the job's reason"


def test_bronze_and_stream_summaries_read_as_the_local_bronze_layer():
    assert [(t.table, t.rows, t.ingested) for t in bronze_tables(json.loads(job_output("bronze", BRONZE).splitlines()[-1]))] == [
        ("crm_cust_info", 18494, True), ("erp_loc_a101", 18484, False),
    ]
    stream = {"layer": "stream", "tables": [{"table": "main.logistics.bronze_kafka_orders", "rows": 120, "new_rows": 0, "partitions": 3}], "failed": []}
    assert [(t.table, t.rows, t.ingested) for t in bronze_tables(stream)] == [("kafka_orders", 120, False)]


def test_a_summary_of_another_version_is_one_line():
    with pytest.raises(PipelineError, match="is the job wheel from the same version as the flow"):
        silver_counts({"layer": "silver", "tables": [{"table": "x", "rows": 3}], "failed": []})
    with pytest.raises(PipelineError, match="counts do not reconcile"):
        silver_counts({"layer": "silver", "tables": [{**asdict(SILVER[0]), "rows_out": 1}], "failed": []})


# --- settings and credentials -----------------------------------------------------------------------


def test_settings_defaults_and_env_names(monkeypatch):
    defaults = DatabricksSettings()
    assert (defaults.run_mode, defaults.compute, defaults.task_type) == ("submit", "serverless", "python_wheel")
    assert (defaults.new_cluster_spark_version, defaults.serverless_environment_version) == ("17.3.x-scala2.13", "4")
    assert (defaults.package_name, defaults.entry_point, defaults.wheel_path) == ("logistics_pipeline_job", "logistics-spark", None)
    assert defaults.max_wait_seconds == 3 * 60 * 60 and defaults.poll_frequency_seconds == 30 and defaults.run_retries == 0
    for name, value in {"SCHEMA": "orders", "COMPUTE": "existing_cluster", "EXISTING_CLUSTER_ID": "0923-164208-meows279", "RUN_MODE": "job_id",
                        "BRONZE_JOB_ID": "42", "MAX_WAIT_SECONDS": "600", "HOST": "dbc-1.cloud.databricks.com", "WHEEL_PATH": WHEEL}.items():
        monkeypatch.setenv(f"LOGISTICS_DATABRICKS_{name}", value)
    settings = DatabricksSettings()
    assert (settings.schema_name, settings.compute, settings.existing_cluster_id) == ("orders", "existing_cluster", "0923-164208-meows279")
    assert (settings.run_mode, settings.bronze_job_id, settings.max_wait_seconds, settings.host, settings.wheel_path) == ("job_id", 42, 600, "dbc-1.cloud.databricks.com", WHEEL)


def test_missing_credentials_is_one_line():
    with pytest.raises(PipelineError) as raised:
        require_credentials(DatabricksSettings())
    assert str(raised.value) == MISSING_CREDENTIALS
    assert "\n" not in MISSING_CREDENTIALS
    assert "LOGISTICS_DATABRICKS_CREDENTIALS_BLOCK" in MISSING_CREDENTIALS and "DATABRICKS_TOKEN" in MISSING_CREDENTIALS


def test_run_without_credentials_fails_before_any_request(fake):
    with pytest.raises(PipelineError, match="needs Databricks credentials"):
        run_layer_on_databricks.fn("bronze", DatabricksSettings(), FLOW_RUN)
    assert not fake.requests


@pytest.mark.parametrize("host", ["dbc-1234abcd-5678.cloud.databricks.com", "https://dbc-1234abcd-5678.cloud.databricks.com/", " http://dbc-1234abcd-5678.cloud.databricks.com "])
def test_a_host_with_or_without_https_is_kept_bare(monkeypatch, host):
    monkeypatch.setenv("DATABRICKS_HOST", host)
    monkeypatch.setenv("DATABRICKS_TOKEN", TOKEN)
    auth = resolve_credentials(DatabricksSettings())
    assert auth == DatabricksAuth(host="dbc-1234abcd-5678.cloud.databricks.com", token=TOKEN)
    assert auth.url == "https://dbc-1234abcd-5678.cloud.databricks.com" and auth.method == "pat"
    assert sdk_config(auth, DatabricksSettings()).host == auth.url
    assert TOKEN not in repr(auth) and TOKEN not in str(auth) and TOKEN not in repr(DatabricksSettings())


def test_a_host_that_is_not_one_is_refused():
    with pytest.raises(PipelineError, match="is not a workspace host"):
        bare_host("dbc-1.cloud.databricks.com/some/path")


def test_service_principal_credentials(monkeypatch):
    monkeypatch.setenv("DATABRICKS_HOST", "adb-1234.5.azuredatabricks.net")
    monkeypatch.setenv("DATABRICKS_CLIENT_ID", "6f1c0b6e-sp")
    monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", "dose-SECRET")
    auth = resolve_credentials(DatabricksSettings())
    assert (auth.method, auth.client_id, auth.client_secret, auth.token) == ("oauth-m2m", "6f1c0b6e-sp", "dose-SECRET", None)
    monkeypatch.setenv("DATABRICKS_AZURE_TENANT_ID", "tenant-1")
    entra = resolve_credentials(DatabricksSettings())
    assert (entra.method, entra.tenant_id) == ("azure-client-secret", "tenant-1")
    assert "dose-SECRET" not in repr(auth) + repr(entra)


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"DATABRICKS_HOST": "dbc-1.cloud.databricks.com"}, "DATABRICKS_HOST is set but not how to sign in"),
        ({"DATABRICKS_TOKEN": TOKEN}, "set DATABRICKS_HOST"),
        ({"DATABRICKS_HOST": "dbc-1.cloud.databricks.com", "DATABRICKS_CLIENT_ID": "sp-id"}, "needs both DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET"),
        ({"DATABRICKS_HOST": "h.cloud.databricks.com", "DATABRICKS_TOKEN": TOKEN, "DATABRICKS_CLIENT_ID": "a", "DATABRICKS_CLIENT_SECRET": "b"}, "not both"),
    ],
)
def test_incomplete_credentials_say_what_is_missing(monkeypatch, env, complaint):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(PipelineError, match=complaint) as raised:
        require_credentials(DatabricksSettings())
    assert TOKEN not in str(raised.value) and "\n" not in str(raised.value)


def test_a_service_principal_signs_in_with_oauth_m2m(fake):
    fake.outcomes.append(Outcome(logs=job_output("bronze", BRONZE)))
    settings = make_settings(fake, token=None, client_id=fake.client_id, client_secret=fake.client_secret)
    run(settings)
    [token_request] = fake.sent("POST", "/oidc/v1/token")
    assert token_request.headers["authorization"].startswith("Basic ")
    assert all(r.headers["authorization"] == f"Bearer {fake.access_token}" for r in fake.requests if r.path.startswith("/api/"))


def test_a_refused_service_principal_is_one_line(fake):
    settings = make_settings(fake, token=None, client_id=fake.client_id, client_secret="wrong-SECRET")
    with pytest.raises(PipelineError, match="Databricks runs/submit .bronze. failed") as raised:
        run(settings)
    assert "wrong-SECRET" not in str(raised.value) and "\n" not in str(raised.value) and not fake.runs


# --- the order stream ------------------------------------------------------------------------------

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


def test_the_stream_runs_with_the_secret_scope_not_the_secret(fake):
    stream = {"layer": "stream", "tables": [{"table": "main.logistics.bronze_kafka_orders", "rows": 120, "new_rows": 20, "partitions": 3}], "failed": []}
    fake.outcomes.append(Outcome(logs=json.dumps(stream) + "\n"))
    settings = stream_settings(make_settings(fake, kafka_secret_scope="kafka"), sasl_connection(), "orders")
    result = run(settings, layer="stream")
    [body] = fake.bodies(SUBMIT)
    assert body["tasks"][0]["task_key"] == "stream" and body["run_name"].startswith("logistics-pipeline stream")
    assert body["tasks"][0]["python_wheel_task"]["parameters"] == [
        "stream", "--catalog", "main", "--schema", "logistics",
        "--bootstrap-servers", KAFKA, "--topic", "orders",
        "--checkpoint", "/Volumes/main/logistics/checkpoints/kafka_orders",
        "--security-protocol", "SASL_SSL", "--sasl-mechanism", "PLAIN", "--kafka-secret-scope", "kafka",
    ]
    assert body["idempotency_token"] == idempotency_token(FLOW_RUN, "stream", 0) != idempotency_token(FLOW_RUN, "bronze", 0)
    assert result["summary"] == stream
    sent = json.dumps([r.body for r in fake.requests])
    assert KAFKA_PASSWORD not in sent and KAFKA_USERNAME not in sent


def test_stream_settings_for_databricks_win_over_the_pipelines():
    databricks = make_settings(
        kafka_bootstrap_servers="10.0.0.5:9092", kafka_topic="orders-prod", kafka_security_protocol="PLAINTEXT",
        stream_checkpoint="abfss://lake@acct.dfs.core.windows.net/checkpoints/orders",
    )
    params = entrypoint_parameters("stream", stream_settings(databricks, sasl_connection(), "orders"))
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
    assert run_now_request("stream", settings, FLOW_RUN, 0) == {
        "job_id": JOB_ID,
        "idempotency_token": idempotency_token(FLOW_RUN, "stream", 0),
        "job_parameters": {
            "catalog": "main", "schema": "logistics", "bootstrap_servers": KAFKA, "topic": "orders",
            "checkpoint": "/Volumes/main/logistics/checkpoints/kafka_orders", "security_protocol": "SASL_SSL",
            "sasl_mechanism": "PLAIN", "kafka_secret_scope": "kafka",
        },
    }
    with pytest.raises(PipelineError, match="LOGISTICS_DATABRICKS_STREAM_JOB_ID"):
        run_now_request("stream", make_settings(run_mode="job_id", kafka_bootstrap_servers=KAFKA), FLOW_RUN, 0)
