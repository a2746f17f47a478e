"""Bronze, the order stream and silver as Databricks job runs: credentials, the job spec,
submit, wait, cancel.

The job spec is built from ``prefect_databricks.models.jobs`` and sent to the Jobs API 2.1
endpoints that ``prefect_databricks.jobs`` wraps (runs/submit, run-now, runs/get, runs/cancel),
through ``DatabricksCredentials.get_client()`` (the block's authenticated httpx client, PAT or
OAuth service principal). We call the endpoints ourselves rather than the wrapper tasks because
``jobs_runs_submit`` has no ``environments`` argument (serverless needs it) and sends ``null``
for every unset task field, and the wrappers leave retrying to the caller.

Serverless is not in the models (they predate it): the task's ``environment_key`` and the
run's ``environments`` are passed as extra fields, shaped as the API documents them.

The stream's SASL credentials never enter a job spec: it names a Databricks secret scope, and
the job reads the secrets from it on the cluster.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from typing import Any

import httpx
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.asyncutils import run_coro_as_sync
from prefect_databricks import DatabricksCredentials
from prefect_databricks.models.jobs import (
    Library,
    NewCluster,
    PythonWheelTask,
    RunNowInput,
    RunSubmitSettings,
    RunSubmitTaskSettings,
    SparkPythonTask,
)

from logistics_pipeline.tasks.databricks.settings import DatabricksSettings
from logistics_pipeline.tasks.errors import PipelineError, one_line
from logistics_pipeline.tasks.kafka.connection import KafkaConnection
from logistics_pipeline.tasks.orchestration.logs import run_logger

LAYERS = ("bronze", "stream", "silver")
TERMINAL_STATES = frozenset({"TERMINATED", "SKIPPED", "INTERNAL_ERROR"})
ENVIRONMENT_KEY = "logistics"
_TOKEN_NAMESPACE = uuid.UUID("6f1f7a52-3c1e-4d55-9a0e-8f2b1c7d4e90")
_MAX_RETRY_DELAY_SECONDS = 300.0
_REQUEST_TIMEOUT_SECONDS = 60.0

MISSING_CREDENTIALS = (
    "engine=databricks needs Databricks credentials: save a DatabricksCredentials block and set "
    "LOGISTICS_DATABRICKS_CREDENTIALS_BLOCK, or set DATABRICKS_HOST and DATABRICKS_TOKEN "
    "(or DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET for a service principal)"
)

_sleep = asyncio.sleep  # the retry backoff's sleep; tests replace it to observe the delays


# --- credentials -------------------------------------------------------------------------------


def _bare_host(host: str) -> str:
    """The block wants a bare host: no scheme, no trailing slash."""
    return host.strip().removeprefix("https://").removeprefix("http://").rstrip("/")


def require_credentials(settings: DatabricksSettings) -> DatabricksCredentials:
    """The Databricks credentials block, or a one-line PipelineError saying what to configure."""
    if settings.credentials_block:
        try:
            block = DatabricksCredentials.load(settings.credentials_block, _sync=True)
        except Exception as error:  # noqa: BLE001 - any load failure means the same fix
            raise PipelineError(
                f"cannot load the DatabricksCredentials block {settings.credentials_block!r} "
                f"(LOGISTICS_DATABRICKS_CREDENTIALS_BLOCK): {type(error).__name__}: {one_line(error)}"
            ) from None
        return block.model_copy(update={"databricks_instance": _bare_host(block.databricks_instance)})

    token = settings.token.get_secret_value() if settings.token else ""
    client_id = settings.client_id or ""
    client_secret = settings.client_secret.get_secret_value() if settings.client_secret else ""
    if not (settings.host or token or client_id or client_secret):
        raise PipelineError(MISSING_CREDENTIALS)
    if not settings.host:
        raise PipelineError(
            "Databricks credentials are set but not the workspace: set DATABRICKS_HOST (e.g. dbc-1234abcd-5678.cloud.databricks.com)"
        )
    if token and (client_id or client_secret):
        raise PipelineError("set either DATABRICKS_TOKEN or DATABRICKS_CLIENT_ID/DATABRICKS_CLIENT_SECRET, not both")
    if bool(client_id) != bool(client_secret):
        raise PipelineError("a Databricks service principal needs both DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET")
    if not (token or client_id):
        raise PipelineError(
            "DATABRICKS_HOST is set but not how to sign in: set DATABRICKS_TOKEN, or DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET"
        )
    auth: dict[str, Any] = (
        {"token": token} if token else {"client_id": client_id, "client_secret": client_secret, "tenant_id": settings.tenant_id}
    )
    return DatabricksCredentials(databricks_instance=_bare_host(settings.host), **auth)


# --- the job spec -----------------------------------------------------------------------------


def _check_layer(layer: str) -> None:
    if layer not in LAYERS:
        raise PipelineError(f"unknown layer {layer!r}: Databricks runs one of {', '.join(LAYERS)}")


def idempotency_token(flow_run_id: str, layer: str) -> str:
    """Stable per flow run and layer (36 chars), so a retried request never starts a second run."""
    return str(uuid.uuid5(_TOKEN_NAMESPACE, f"{flow_run_id}/{layer}"))


def stream_settings(databricks: DatabricksSettings, connection: KafkaConnection | None, topic: str) -> DatabricksSettings | None:
    """The Databricks settings with the stream's Kafka fields that are not set for Databricks
    taken from the pipeline's Kafka connection and topic; None when there is no Kafka or
    ``run_stream`` is off. The connection's user and password are not taken: the job reads
    them from ``kafka_secret_scope`` on the cluster."""
    bootstrap_servers = databricks.kafka_bootstrap_servers or (connection.bootstrap_servers if connection else None)
    if not (bootstrap_servers and databricks.run_stream):
        return None
    stream = databricks.model_copy(update={
        "kafka_bootstrap_servers": bootstrap_servers,
        "kafka_topic": databricks.kafka_topic or topic,
        "kafka_security_protocol": databricks.kafka_security_protocol or (connection.security_protocol if connection else None),
        "kafka_sasl_mechanism": databricks.kafka_sasl_mechanism or (connection.sasl_mechanism if connection else None),
    })
    stream_options(stream)  # a missing secret scope stops the layer before any run starts
    return stream


def stream_options(settings: DatabricksSettings) -> dict[str, str]:
    """The stream's entrypoint options; SASL names the secret scope, never a secret."""
    if not settings.kafka_bootstrap_servers:
        raise PipelineError("the stream on Databricks needs Kafka: set LOGISTICS_DATABRICKS_KAFKA_BOOTSTRAP_SERVERS or LOGISTICS_KAFKA_BOOTSTRAP_SERVERS")
    protocol = settings.kafka_security_protocol or "PLAINTEXT"
    options = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "topic": settings.kafka_topic or "orders",
        "checkpoint": settings.stream_checkpoint,
        "security_protocol": protocol,
    }
    if settings.kafka_sasl_mechanism:
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
    if settings.kafka_secret_scope:
        options["kafka_secret_scope"] = settings.kafka_secret_scope
    elif protocol.startswith("SASL"):
        raise PipelineError(
            f"Kafka uses {protocol}: set LOGISTICS_DATABRICKS_KAFKA_SECRET_SCOPE to a Databricks secret scope holding "
            "kafka-username and kafka-password (secrets are read on the cluster, never sent in the job)"
        )
    return options


def entrypoint_parameters(layer: str, settings: DatabricksSettings) -> list[str]:
    """Command-line arguments of the package's Spark entrypoint for one layer."""
    parameters = [layer, "--catalog", settings.catalog, "--schema", settings.schema_name]
    if layer == "bronze":
        parameters += ["--source-path", settings.source_path]
    if layer == "stream":
        for name, value in stream_options(settings).items():
            parameters += [f"--{name.replace('_', '-')}", value]
    return parameters


def _work(layer: str, settings: DatabricksSettings) -> dict[str, Any]:
    """The task's python_wheel_task or spark_python_task."""
    parameters = entrypoint_parameters(layer, settings)
    if settings.task_type == "python_wheel":
        wheel_task = PythonWheelTask(package_name=settings.package_name, entry_point=settings.entry_point, parameters=parameters)
        return {"python_wheel_task": wheel_task}
    if not settings.python_file:
        raise PipelineError("task_type=spark_python needs the entrypoint script: set LOGISTICS_DATABRICKS_PYTHON_FILE")
    return {"spark_python_task": SparkPythonTask(python_file=settings.python_file, parameters=parameters)}


def _compute(settings: DatabricksSettings) -> dict[str, Any]:
    """Where the task runs; on clusters the wheel is a task library, on serverless an environment dependency."""
    if settings.compute == "serverless":
        return {"environment_key": ENVIRONMENT_KEY}  # not in the models: an extra field
    libraries = [Library(whl=settings.wheel_path)]
    if settings.compute == "existing_cluster":
        if not settings.existing_cluster_id:
            raise PipelineError("compute=existing_cluster needs LOGISTICS_DATABRICKS_EXISTING_CLUSTER_ID")
        return {"existing_cluster_id": settings.existing_cluster_id, "libraries": libraries}
    if not settings.new_cluster_node_type_id:
        raise PipelineError("compute=new_cluster needs LOGISTICS_DATABRICKS_NEW_CLUSTER_NODE_TYPE_ID (e.g. i3.xlarge or Standard_DS3_v2)")
    cluster = NewCluster(
        spark_version=settings.new_cluster_spark_version,
        node_type_id=settings.new_cluster_node_type_id,
        num_workers=settings.new_cluster_num_workers,
        data_security_mode="SINGLE_USER",  # Unity Catalog access; not in the models: an extra field
    )
    return {"new_cluster": cluster, "libraries": libraries}


def build_submit_payload(layer: str, settings: DatabricksSettings, flow_run_id: str) -> dict[str, Any]:
    """The runs/submit request body for one layer: one task running the package's entrypoint."""
    _check_layer(layer)
    extra: dict[str, Any] = {}
    if settings.compute == "serverless":
        spec = {"environment_version": settings.serverless_environment_version, "dependencies": [settings.wheel_path]}
        extra["environments"] = [{"environment_key": ENVIRONMENT_KEY, "spec": spec}]
    run = RunSubmitSettings(
        run_name=f"logistics-pipeline {layer} (flow run {str(flow_run_id)[:8]})",
        tasks=[RunSubmitTaskSettings(task_key=layer, **_work(layer, settings), **_compute(settings))],
        idempotency_token=idempotency_token(str(flow_run_id), layer),
        timeout_seconds=math.ceil(settings.max_wait_seconds),
        **extra,
    )
    return run.model_dump(mode="json", exclude_none=True)


def build_run_now_payload(layer: str, settings: DatabricksSettings, flow_run_id: str) -> dict[str, Any]:
    """The run-now request body for the layer's pre-configured job (run_mode=job_id).

    The job should define the job parameters ``catalog``, ``schema`` and ``source_path`` (the
    stream's job: ``bootstrap_servers``, ``topic``, ``checkpoint``, ``security_protocol`` and,
    with SASL, ``sasl_mechanism`` and ``kafka_secret_scope``) and pass them to the entrypoint
    (e.g. ``{{job.parameters.catalog}}``); they are overridden here.
    """
    _check_layer(layer)
    job_id = {"bronze": settings.bronze_job_id, "stream": settings.stream_job_id, "silver": settings.silver_job_id}[layer]
    if job_id is None:
        raise PipelineError(f"run_mode=job_id needs LOGISTICS_DATABRICKS_{layer.upper()}_JOB_ID")
    parameters = {"catalog": settings.catalog, "schema": settings.schema_name}
    parameters |= stream_options(settings) if layer == "stream" else {"source_path": settings.source_path}
    run = RunNowInput(job_id=job_id, idempotency_token=idempotency_token(str(flow_run_id), layer), job_parameters=parameters)
    return run.model_dump(mode="json", exclude_none=True)


# --- calling the API --------------------------------------------------------------------------


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return None


def _describe(method: str, endpoint: str, response: httpx.Response) -> str:
    """One line from a Databricks error answer ({"error_code": ..., "message": ...})."""
    try:
        body = response.json()
        detail = f"{body.get('error_code', '')}: {body.get('message', '')}".strip(": ")
    except ValueError:
        detail = response.text[:200]
    hint = " (check the Databricks credentials and their permissions)" if response.status_code in (401, 403) else ""
    return one_line(f"Databricks API {method} /api/{endpoint} answered {response.status_code} {detail}{hint}")


async def _request(
    credentials: DatabricksCredentials,
    settings: DatabricksSettings,
    method: str,
    endpoint: str,
    *,
    json: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One Jobs API call; 429, 5xx and transport errors are retried with exponential backoff."""
    attempts = settings.api_max_retries + 1
    for attempt in range(attempts):
        delay: float | None = None
        try:
            async with credentials.get_client() as client:  # a fresh client also refreshes an OAuth token
                response = await client.request(method, endpoint, json=json, params=params, timeout=_REQUEST_TIMEOUT_SECONDS)
        except httpx.TransportError as error:
            problem = f"Databricks API {method} /api/{endpoint} failed: {type(error).__name__}: {one_line(error)}"
        except RuntimeError as error:  # the block's OAuth token request was refused
            raise PipelineError(f"Databricks sign-in failed: {one_line(error)}") from None
        else:
            if response.status_code < 400:
                return response.json() if response.content else {}
            problem = _describe(method, endpoint, response)
            if response.status_code != 429 and response.status_code < 500:
                raise PipelineError(problem)
            delay = _retry_after(response)
        if attempt + 1 == attempts:
            raise PipelineError(f"{problem} (gave up after {attempts} attempts)")
        backoff = settings.api_backoff_seconds * 2**attempt
        await _sleep(min(delay if delay is not None else backoff, _MAX_RETRY_DELAY_SECONDS))
    raise AssertionError("unreachable")


def _state(run: dict[str, Any]) -> tuple[str, str | None, str]:
    """(life cycle state, result state, message) of a runs/get answer; falls back to the newer `status`."""
    state = run.get("state") or {}
    status = run.get("status") or {}
    details = status.get("termination_details") or {}
    life_cycle = state.get("life_cycle_state") or status.get("state") or "UNKNOWN"
    result = state.get("result_state") or (details.get("code") if status.get("state") == "TERMINATED" else None)
    task_states = [task.get("state") or {} for task in run.get("tasks") or []]
    failed = [s.get("state_message") for s in task_states if s.get("result_state") not in (None, "SUCCESS") and s.get("state_message")]
    message = state.get("state_message") or details.get("message") or (failed[0] if failed else "")
    return life_cycle, result, message


def _duration_seconds(run: dict[str, Any], fallback: float) -> float:
    start, end = run.get("start_time") or 0, run.get("end_time") or 0
    return (end - start) / 1000 if start and end > start else round(fallback, 3)


async def _run_layer(
    layer: str,
    settings: DatabricksSettings,
    flow_run_id: str,
    credentials: DatabricksCredentials,
    logger: logging.Logger | logging.LoggerAdapter,
) -> dict[str, Any]:
    """Start the layer's run, wait for it, cancel it when it outlives max_wait_seconds."""
    if settings.run_mode == "job_id":
        endpoint, payload = "2.1/jobs/run-now", build_run_now_payload(layer, settings, flow_run_id)
    else:
        endpoint, payload = "2.1/jobs/runs/submit", build_submit_payload(layer, settings, flow_run_id)
    started = time.monotonic()
    run_id = int((await _request(credentials, settings, "POST", endpoint, json=payload))["run_id"])

    url, seen = "", None
    while True:
        try:
            run = await _request(credentials, settings, "GET", "2.1/jobs/runs/get", params={"run_id": run_id})
        except PipelineError as error:
            raise PipelineError(
                f"lost contact with Databricks while waiting for {layer} run {run_id} {url}, which may still be running: {error}"
            ) from None
        if not url:
            url = run.get("run_page_url") or f"(run {run_id})"
            logger.info("databricks %s: run %s started: %s", layer, run_id, url)
        life_cycle, result, message = _state(run)
        shown = f"{life_cycle}/{result}" if result else life_cycle
        if shown != seen:
            logger.info("databricks %s: run %s is %s%s", layer, run_id, shown, f" ({message})" if message else "")
            seen = shown
        if life_cycle in TERMINAL_STATES:
            if result == "SUCCESS":
                duration = _duration_seconds(run, time.monotonic() - started)
                return {"run_id": run_id, "run_page_url": url, "result_state": result, "duration": duration}
            raise PipelineError(f"Databricks {layer} run {run_id} ended {shown}: {one_line(message) or 'no message'} - see {url}")

        waited = time.monotonic() - started
        if waited >= settings.max_wait_seconds:
            try:
                await _request(credentials, settings, "POST", "2.1/jobs/runs/cancel", json={"run_id": run_id})
            except PipelineError as error:
                raise PipelineError(
                    f"Databricks {layer} run {run_id} did not finish within {settings.max_wait_seconds:g} s "
                    f"and cancelling it failed ({error}): cancel it at {url}"
                ) from None
            raise PipelineError(
                f"Databricks {layer} run {run_id} was cancelled after {waited:.0f} s "
                f"(max_wait_seconds={settings.max_wait_seconds:g}) while {life_cycle}: {url}"
            )
        await asyncio.sleep(min(settings.poll_frequency_seconds, settings.max_wait_seconds - waited))


@task(name="databricks-layer-run", task_run_name="databricks-{layer}", cache_policy=NO_CACHE)
def run_layer_on_databricks(layer: str, settings: DatabricksSettings, flow_run_id: str) -> dict[str, Any]:
    """Run one layer as a Databricks job run and wait for it.

    Returns ``{run_id, run_page_url, result_state, duration}`` (duration in seconds). Raises
    PipelineError with the state message and run page URL when the run fails, and cancels the
    run when it is still going after ``max_wait_seconds``.
    """
    _check_layer(layer)
    credentials = require_credentials(settings)
    return run_coro_as_sync(_run_layer(layer, settings, str(flow_run_id), credentials, run_logger(__name__)))


def run_on_databricks(layer: str, settings: DatabricksSettings) -> dict[str, Any]:
    """Run one layer as a Databricks job run, idempotent per root flow run and layer (so a
    re-run of the parent after a failed sub-flow reuses the run instead of starting another)."""
    from prefect.runtime import flow_run

    require_credentials(settings)
    result = run_layer_on_databricks(layer, settings, str(flow_run.root_flow_run_id or flow_run.id))
    get_run_logger().info("%s ran on Databricks: %s (%s)", layer, result["run_page_url"], result["result_state"])
    return result
