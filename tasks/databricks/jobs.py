"""Bronze, the order stream and silver as Databricks job runs, through databricks-sdk: the job
spec, start (or attach), wait, cancel, and the run's summary.

``WorkspaceClient().jobs`` does the HTTP: Jobs API 2.2, unified auth, and retries of requests
answered 429 or 503 or lost in transport (for ``api_retry_timeout_seconds``). A one-time run
is ``runs/submit`` with one task; serverless gets an ``environments`` entry holding the job
wheel (prefect-databricks' ``jobs_runs_submit`` has no such argument). ``run_mode=job_id``
starts a job you defined (the bundle's) with ``run-now``. The SDK's waiter polls on its own
schedule and cannot cancel, so the wait is ours: poll, cancel after ``max_wait_seconds``.

Retries that retry. Every start carries an idempotency token: the Jobs API answers a token it
has seen with that token's run instead of starting another. The token names the root flow
run, the layer and the attempt: the attempt is the number of this flow run's runs of the
layer that ended without success. So a request repeated after a lost answer (by the SDK, or
by a Prefect retry of the task or flow) gets the same run back and waits for it, or takes its
result when it has succeeded; after a run FAILED, TIMEDOUT or was cancelled, the next token
starts a new run.

The stream's SASL credentials never enter a job spec: it names a Databricks secret scope, and
the job reads the secrets from it on the cluster.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import DatabricksError, PermissionDenied, Unauthenticated
from databricks.sdk.service import compute, jobs
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from logistics_pipeline.tasks.databricks.credentials import resolve_credentials, workspace_client
from logistics_pipeline.tasks.databricks.output import job_error, job_summary
from logistics_pipeline.tasks.databricks.settings import DatabricksSettings
from logistics_pipeline.tasks.errors import PipelineError, one_line
from logistics_pipeline.tasks.kafka.connection import KafkaConnection
from logistics_pipeline.tasks.orchestration.logs import run_logger

LAYERS = ("bronze", "stream", "silver")
JOB_RUN_ID = "{{job.run_id}}"
"""Databricks fills this dynamic value reference in: the quality results of silver name the job run."""
TERMINAL_STATES = frozenset({"TERMINATED", "SKIPPED", "INTERNAL_ERROR"})
ENVIRONMENT_KEY = "logistics"
MAX_ATTEMPTS = 20
"""Runs of one layer that may fail in one flow run before the next start is refused."""
_TOKEN_NAMESPACE = uuid.UUID("6f1f7a52-3c1e-4d55-9a0e-8f2b1c7d4e90")

Logger = logging.Logger | logging.LoggerAdapter
T = TypeVar("T")

require_credentials = resolve_credentials
"""What flows/cli.py and flows/pipeline.py check before anything starts: one line when unset."""


# --- the job spec -----------------------------------------------------------------------------


def _check_layer(layer: str) -> None:
    if layer not in LAYERS:
        raise PipelineError(f"unknown layer {layer!r}: Databricks runs one of {', '.join(LAYERS)}")


def idempotency_token(flow_run_id: str, layer: str, attempt: int) -> str:
    """Stable per flow run, layer and attempt (36 chars; the API takes 64)."""
    return str(uuid.uuid5(_TOKEN_NAMESPACE, f"{flow_run_id}/{layer}/{attempt}"))


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
    if layer == "silver":
        parameters += ["--run-id", JOB_RUN_ID]
    if layer == "bronze":
        parameters += ["--source-path", settings.source_path]
    if layer == "stream":
        for name, value in stream_options(settings).items():
            parameters += [f"--{name.replace('_', '-')}", value]
    return parameters


def _wheel(settings: DatabricksSettings) -> str:
    if not settings.wheel_path:
        raise PipelineError(
            "run_mode=submit needs the job wheel: build it with `make job-wheel`, upload dist/logistics_pipeline_job-*.whl "
            "to a volume and set LOGISTICS_DATABRICKS_WHEEL_PATH to it (or use run_mode=job_id with the bundle's job)"
        )
    return settings.wheel_path


def _work(layer: str, settings: DatabricksSettings) -> dict[str, Any]:
    """The task's python_wheel_task or spark_python_task."""
    parameters = entrypoint_parameters(layer, settings)
    if settings.task_type == "python_wheel":
        return {"python_wheel_task": jobs.PythonWheelTask(package_name=settings.package_name, entry_point=settings.entry_point, parameters=parameters)}
    if not settings.python_file:
        raise PipelineError("task_type=spark_python needs the entrypoint script: set LOGISTICS_DATABRICKS_PYTHON_FILE")
    return {"spark_python_task": jobs.SparkPythonTask(python_file=settings.python_file, parameters=parameters)}


def _compute(settings: DatabricksSettings) -> dict[str, Any]:
    """Where the task runs; on clusters the wheel is a task library, on serverless an environment dependency."""
    if settings.compute == "serverless":
        return {"environment_key": ENVIRONMENT_KEY}
    libraries = [compute.Library(whl=_wheel(settings))]
    if settings.compute == "existing_cluster":
        if not settings.existing_cluster_id:
            raise PipelineError("compute=existing_cluster needs LOGISTICS_DATABRICKS_EXISTING_CLUSTER_ID")
        return {"existing_cluster_id": settings.existing_cluster_id, "libraries": libraries}
    if not settings.new_cluster_node_type_id:
        raise PipelineError("compute=new_cluster needs LOGISTICS_DATABRICKS_NEW_CLUSTER_NODE_TYPE_ID (e.g. i3.xlarge or Standard_DS3_v2)")
    cluster = compute.ClusterSpec(
        spark_version=settings.new_cluster_spark_version,
        node_type_id=settings.new_cluster_node_type_id,
        num_workers=settings.new_cluster_num_workers,
        data_security_mode=compute.DataSecurityMode.SINGLE_USER,  # Unity Catalog access
    )
    return {"new_cluster": cluster, "libraries": libraries}


def submit_request(layer: str, settings: DatabricksSettings, flow_run_id: str, attempt: int) -> dict[str, Any]:
    """Keyword arguments of ``jobs.submit`` for one layer: one task running the package's entrypoint."""
    _check_layer(layer)
    request: dict[str, Any] = {
        "run_name": f"logistics-pipeline {layer} (flow run {str(flow_run_id)[:8]})",
        "tasks": [jobs.SubmitTask(task_key=layer, **_work(layer, settings), **_compute(settings))],
        "idempotency_token": idempotency_token(flow_run_id, layer, attempt),
        "timeout_seconds": math.ceil(settings.max_wait_seconds),
    }
    if settings.compute == "serverless":
        spec = compute.Environment(environment_version=settings.serverless_environment_version, dependencies=[_wheel(settings)])
        request["environments"] = [jobs.JobEnvironment(environment_key=ENVIRONMENT_KEY, spec=spec)]
    return request


def run_now_request(layer: str, settings: DatabricksSettings, flow_run_id: str, attempt: int) -> dict[str, Any]:
    """Keyword arguments of ``jobs.run_now`` for the layer's job (run_mode=job_id).

    The job should define the job parameters ``catalog``, ``schema`` and ``source_path`` (the
    stream's job: ``bootstrap_servers``, ``topic``, ``checkpoint``, ``security_protocol`` and,
    with SASL, ``sasl_mechanism`` and ``kafka_secret_scope``) and pass them to the entrypoint
    (e.g. ``{{job.parameters.catalog}}``); they are overridden here. Its task that runs the
    layer is keyed by the layer's name (or is the job's only task): its output is the summary.
    The bundle's job (``job_id``) holds every layer and gold: run-now's ``only`` runs just this
    layer's task of it, so the flow's layers do not each start the whole job.
    """
    _check_layer(layer)
    own_job = {"bronze": settings.bronze_job_id, "stream": settings.stream_job_id, "silver": settings.silver_job_id}[layer]
    job_id = own_job or settings.job_id
    if job_id is None:
        raise PipelineError(
            f"run_mode=job_id needs LOGISTICS_DATABRICKS_JOB_ID (the bundle's job) or LOGISTICS_DATABRICKS_{layer.upper()}_JOB_ID"
        )
    parameters = {"catalog": settings.catalog, "schema": settings.schema_name}
    parameters |= stream_options(settings) if layer == "stream" else {"source_path": settings.source_path}
    request = {"job_id": job_id, "idempotency_token": idempotency_token(flow_run_id, layer, attempt), "job_parameters": parameters}
    return request if own_job else request | {"only": [layer]}


# --- calling the API --------------------------------------------------------------------------


def _call(what: str, call: Callable[[], T]) -> T:
    """One Jobs API call. The SDK has retried what can be retried; what is left is one line."""
    try:
        return call()
    except DatabricksError as error:
        hint = " (check the Databricks credentials and their permissions)" if isinstance(error, (Unauthenticated, PermissionDenied)) else ""
        code = error.error_code or type(error).__name__
        raise PipelineError(one_line(f"Databricks {what} failed: {code}: {error}{hint}")) from None
    except ValueError as error:  # the SDK's sign-in (an OAuth token refused); it masks secrets
        raise PipelineError(one_line(f"Databricks {what} failed: sign-in refused: {error} (check the Databricks credentials)")) from None
    except TimeoutError as error:  # the SDK's retries ran out (api_retry_timeout_seconds)
        cause = error.__cause__ or error
        raise PipelineError(one_line(f"Databricks {what} failed (gave up retrying: {error}): {type(cause).__name__}: {cause}")) from None
    except OSError as error:  # requests' errors the SDK does not retry
        raise PipelineError(one_line(f"Databricks {what} failed: {type(error).__name__}: {error}")) from None


def run_state(run: jobs.Run) -> tuple[str, str | None, str]:
    """(life cycle state, result state, message) of a run; falls back to the newer ``status``."""
    state = run.state or jobs.RunState()
    status = run.status or jobs.RunStatus()
    details = status.termination_details or jobs.TerminationDetails()
    terminated = status.state == jobs.RunLifecycleStateV2State.TERMINATED
    life_cycle = _value(state.life_cycle_state) or _value(status.state) or "UNKNOWN"
    result = _value(state.result_state) or (_value(details.code) if terminated else None)
    failed = [t.state.state_message for t in run.tasks or [] if t.state and t.state.state_message and _value(t.state.result_state) not in (None, "SUCCESS")]
    message = state.state_message or details.message or (failed[0] if failed else "")
    return life_cycle, result, one_line(message)


def _value(enum: Any) -> str | None:
    return enum.value if enum is not None else None


def _shown(run: jobs.Run) -> str:
    life_cycle, result, _ = run_state(run)
    return f"{life_cycle}/{result}" if result else life_cycle


def _url(run: jobs.Run) -> str:
    return run.run_page_url or f"(run {run.run_id})"


def _start(client: WorkspaceClient, layer: str, settings: DatabricksSettings, flow_run_id: str, attempt: int) -> int:
    """Start the attempt's run, or get it back when its token was seen; returns the run id."""
    if settings.run_mode == "job_id":
        request = run_now_request(layer, settings, flow_run_id, attempt)
        return int(_call(f"run-now of job {request['job_id']} ({layer})", lambda: client.jobs.run_now(**request)).run_id)
    request = submit_request(layer, settings, flow_run_id, attempt)
    return int(_call(f"runs/submit ({layer})", lambda: client.jobs.submit(**request)).run_id)


def start_or_attach(client: WorkspaceClient, layer: str, settings: DatabricksSettings, flow_run_id: str, logger: Logger) -> jobs.Run:
    """This flow run's run of the layer that is going or has succeeded, or a new one.

    Attempt 0's token first: the API returns the run it started for that token, if any. A run
    that ended without success has used its attempt up, so the next attempt's token follows,
    until a token starts a new run or finds one that is going or succeeded."""
    for attempt in range(MAX_ATTEMPTS):
        run_id = _start(client, layer, settings, flow_run_id, attempt)
        run = _call(f"runs/get of {layer} run {run_id}", lambda: client.jobs.get_run(run_id))
        life_cycle, result, _ = run_state(run)
        if life_cycle not in TERMINAL_STATES or result == "SUCCESS":
            logger.info("databricks %s: run %s (attempt %d): %s", layer, run_id, attempt + 1, _url(run))
            return run
        logger.info("databricks %s: run %s of attempt %d ended %s; attempt %d starts a new run", layer, run_id, attempt + 1, _shown(run), attempt + 2)
    raise PipelineError(f"{MAX_ATTEMPTS} Databricks runs of {layer} have failed in this flow run: start a new flow run")


def wait_for(client: WorkspaceClient, layer: str, run: jobs.Run, settings: DatabricksSettings, logger: Logger) -> jobs.Run:
    """Poll the run until it ends; cancel it when it outlives ``max_wait_seconds``."""
    started, seen, url = time.monotonic(), None, _url(run)
    while True:
        life_cycle, _, message = run_state(run)
        if _shown(run) != seen:
            seen = _shown(run)
            logger.info("databricks %s: run %s is %s%s", layer, run.run_id, seen, f" ({message})" if message else "")
        if life_cycle in TERMINAL_STATES:
            return run
        waited = time.monotonic() - started
        if waited >= settings.max_wait_seconds:
            _cancel(client, layer, run, settings, waited)
        time.sleep(min(settings.poll_frequency_seconds, settings.max_wait_seconds - waited))
        try:
            run = _call(f"runs/get of {layer} run {run.run_id}", lambda: client.jobs.get_run(run.run_id))
        except PipelineError as error:
            raise PipelineError(f"lost contact with Databricks while waiting for {layer} run {run.run_id} {url}, which may still be running: {error}") from None


def _cancel(client: WorkspaceClient, layer: str, run: jobs.Run, settings: DatabricksSettings, waited: float) -> None:
    """Cancel the run (without waiting for it to stop) and raise."""
    life_cycle = run_state(run)[0]
    try:
        _call(f"runs/cancel of {layer} run {run.run_id}", lambda: client.jobs.cancel_run(run.run_id))
    except PipelineError as error:
        raise PipelineError(
            f"Databricks {layer} run {run.run_id} did not finish within {settings.max_wait_seconds:g} s "
            f"and cancelling it failed ({error}): cancel it at {_url(run)}"
        ) from None
    raise PipelineError(
        f"Databricks {layer} run {run.run_id} was cancelled after {waited:.0f} s "
        f"(max_wait_seconds={settings.max_wait_seconds:g}) while {life_cycle}: {_url(run)}"
    )


def _layer_task(run: jobs.Run, layer: str) -> jobs.RunTask | None:
    """The run's task that ran the layer: keyed by the layer, or the run's only task."""
    tasks = run.tasks or []
    keyed = [t for t in tasks if t.task_key == layer]
    return keyed[0] if keyed else tasks[0] if len(tasks) == 1 else None


def _failure_reason(client: WorkspaceClient, run: jobs.Run, layer: str) -> str:
    """Why the run failed: the job's own error line from the task's output, else the API's message."""
    message = run_state(run)[2]
    task_run = _layer_task(run, layer)
    if task_run is None or task_run.run_id is None:
        return message
    try:
        output = client.jobs.get_run_output(task_run.run_id)
    except (DatabricksError, TimeoutError, OSError):  # the output is a better message, not a requirement
        return message
    return job_error(output.logs) or one_line((output.error or "").strip().split("\n")[0]) or message


def run_layer(client: WorkspaceClient, layer: str, settings: DatabricksSettings, flow_run_id: str, logger: Logger) -> dict[str, Any]:
    """Start (or attach to) the layer's run, wait for it, and read its summary.

    Returns ``{run_id, run_page_url, result_state, duration, summary}`` (duration in seconds;
    summary as the job printed it). A run that does not succeed is a one-line PipelineError
    naming the layer, the run, its state, why, and the run page."""
    _check_layer(layer)
    started = time.monotonic()
    run = wait_for(client, layer, start_or_attach(client, layer, settings, flow_run_id, logger), settings, logger)
    _, result, _ = run_state(run)
    if result != "SUCCESS":
        reason = _failure_reason(client, run, layer) or "no message"
        raise PipelineError(f"Databricks {layer} run {run.run_id} ended {_shown(run)}: {reason} - see {_url(run)}")

    task_run = _layer_task(run, layer)
    if task_run is None or task_run.run_id is None:
        raise PipelineError(f"Databricks {layer} run {run.run_id} has no task keyed {layer!r} to read the summary of: see {_url(run)}")
    output = _call(f"runs/get-output of {layer} task run {task_run.run_id}", lambda: client.jobs.get_run_output(task_run.run_id))
    summary = job_summary(output.logs, layer)
    if summary is None:
        raise PipelineError(
            f"Databricks {layer} run {run.run_id} succeeded but its output holds no {layer} summary line: "
            f"is the task the logistics-spark entry point? See {_url(run)}"
        )
    duration = (run.end_time - run.start_time) / 1000 if run.start_time and run.end_time and run.end_time > run.start_time else round(time.monotonic() - started, 3)
    return {"run_id": run.run_id, "run_page_url": _url(run), "result_state": result, "duration": duration, "summary": summary}


# --- Prefect ----------------------------------------------------------------------------------


@task(name="databricks-layer-run", task_run_name="databricks-{layer}", cache_policy=NO_CACHE)
def run_layer_on_databricks(layer: str, settings: DatabricksSettings, flow_run_id: str) -> dict[str, Any]:
    """Run one layer as a Databricks job run and wait for it (see ``run_layer``)."""
    _check_layer(layer)
    return run_layer(workspace_client(settings), layer, settings, flow_run_id, run_logger(__name__))


def run_on_databricks(layer: str, settings: DatabricksSettings) -> dict[str, Any]:
    """Run one layer as a Databricks job run of this (root) flow run; returns the job's summary
    (``{"layer", "tables", "failed"}``). A Prefect retry of the task (``run_retries``) or of the
    flow run starts a new run after a failed one and attaches to one that is going or succeeded."""
    from prefect.runtime import flow_run

    resolve_credentials(settings)  # a missing setting fails here, before a task run starts
    run = run_layer_on_databricks.with_options(retries=settings.run_retries)(layer, settings, str(flow_run.root_flow_run_id or flow_run.id))
    get_run_logger().info("%s ran on Databricks in %.0f s: %s (%s)", layer, run["duration"], run["run_page_url"], run["result_state"])
    return run["summary"]
