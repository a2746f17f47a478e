"""End to end, as people use the pipeline: a real Prefect server, `make deploy`, a process worker.

One server (SQLite, a free port on 127.0.0.1) and one worker serve the whole module:

1. deployments/deploy.sh (what `make deploy` runs) creates the pool and deploys prefect.yaml;
2. the parent runs through `prefect deployment run ... --watch`, then through
   `run_deployment(...)` from Python, each into its own lake, and the gold tables are read;
3. the server's API is compared with prefect.yaml (schedules, pool, concurrency, parameters)
   and asked for the asset lineage the runs recorded;
4. a bad parameter is refused before any run exists; the automation deployments/automations.py
   applies notifies a (local) webhook block of failed runs; two parent runs never overlap.

The server's scheduler service is off, so the active daily schedule cannot start a run in the
middle of the test; the schedules are still stored and listed.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
import yaml

from logistics_pipeline.tasks.orchestration.server import SQLITE_SERVER_SETTINGS

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PREFECT = str(BIN / "prefect")
POOL = "logistics-e2e"
GOLD_TABLES = ("dim_customers", "dim_products", "fact_orders")
PARENT_ENTRYPOINT = "flows/pipeline.py:logistics_pipeline"
SERVER_START_S = 180
RUN_TIMEOUT_S = 600


def prefect_yaml() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())


@functools.cache
def flow_name(entrypoint: str) -> str:
    from prefect.flows import load_flow_from_entrypoint

    path, function = entrypoint.split(":")
    return load_flow_from_entrypoint(f"{ROOT / path}:{function}").name


def parent_deployment() -> str:
    (name,) = [d["name"] for d in prefect_yaml()["deployments"] if d["entrypoint"] == PARENT_ENTRYPOINT]
    return f"{flow_name(PARENT_ENTRYPOINT)}/{name}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def stop(process: subprocess.Popen) -> None:
    """Terminate the process group, then kill it if it has not gone within 20 s."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@dataclass
class Stack:
    api_url: str
    env: dict[str, str]
    tmp: Path
    server_log: Path
    worker_log: Path
    deploy_output: str

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(method, f"{self.api_url}{path}", timeout=30, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def deployment(self, name: str) -> dict[str, Any]:
        return self.api("GET", f"/deployments/name/{name}")

    def cli(self, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            args, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=self.env | env, stdin=subprocess.DEVNULL
        )

    def logs(self) -> str:
        return f"--- worker log ---\n{tail(self.worker_log)}\n--- server log ---\n{tail(self.server_log, 30)}"


def clean_environment(home: Path, api_url: str) -> dict[str, str]:
    """This machine's environment without Prefect, pipeline, Kafka or Databricks settings; the
    server's SQLite settings as the README advises."""
    prefixes = ("PREFECT_", "LOGISTICS_", "DATABRICKS_", "KAFKA_")
    env = {key: value for key, value in os.environ.items() if not key.startswith(prefixes)}
    return env | {
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
        # A run waiting for the parent's concurrency slot is retried after this long (default 30).
        "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "5",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_CLI_WRAP_LINES": "false",
    } | SQLITE_SERVER_SETTINGS


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("e2e")
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = clean_environment(tmp / "prefect-home", api_url)
    processes: list[subprocess.Popen] = []
    server_log, worker_log = tmp / "server.log", tmp / "worker.log"
    try:
        with server_log.open("wb") as log:
            processes.append(
                subprocess.Popen(
                    [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=tmp, start_new_session=True,
                )
            )
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if processes[0].poll() is not None:
                pytest.fail(f"prefect server exited with {processes[0].returncode}:\n{tail(server_log)}")
            try:
                if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"prefect server not healthy after {SERVER_START_S}s:\n{tail(server_log)}")
            time.sleep(0.5)

        # What `make deploy` runs.
        deploy = subprocess.run(
            ["bash", str(ROOT / "deployments" / "deploy.sh")],
            capture_output=True, text=True, timeout=600, cwd=tmp, stdin=subprocess.DEVNULL,
            env=env | {"PREFECT": PREFECT, "LOGISTICS_WORK_POOL": POOL},
        )
        assert deploy.returncode == 0, f"deploy.sh failed:\n{deploy.stdout[-4000:]}\n{deploy.stderr[-4000:]}"
        assert f"prefect worker start --pool '{POOL}'" in deploy.stdout  # Prefect's own advice, followed below

        # A worker started exactly as that advice says, outside the checkout and with no
        # LOGISTICS_PROJECT_DIR: the pull step must take each run to the project.
        worker_env = {key: value for key, value in env.items() if key != "LOGISTICS_PROJECT_DIR"} | {
            "LOGISTICS_LAKE": str(tmp / "default-lake"),
            "PREFECT_WORKER_QUERY_SECONDS": "2",
        }
        with worker_log.open("wb") as log:
            processes.append(
                subprocess.Popen(
                    [PREFECT, "worker", "start", "--pool", POOL],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=worker_env, cwd=tmp, start_new_session=True,
                )
            )
        yield Stack(api_url, env, tmp, server_log, worker_log, deploy.stdout)
    finally:
        for process in reversed(processes):
            stop(process)


@pytest.fixture(scope="module")
def python_api(stack) -> Iterator[None]:
    """Point this test process's Prefect client at the e2e server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
        yield


def gold_rows(lake: Path) -> dict[str, int]:
    with duckdb.connect(str(lake / "gold.duckdb"), read_only=True) as connection:
        return {t: connection.execute(f"select count(*) from main.{t}").fetchone()[0] for t in GOLD_TABLES}


# --- what `prefect deploy --all` created ------------------------------------------------------


def test_every_deployment_is_on_the_pool_as_prefect_yaml_says(stack):
    for spec in prefect_yaml()["deployments"]:
        name = f"{flow_name(spec['entrypoint'])}/{spec['name']}"
        deployment = stack.deployment(name)
        assert deployment["work_pool_name"] == POOL, name
        assert deployment["entrypoint"] == spec["entrypoint"]
        assert set(deployment["tags"]) == set(spec["tags"]), name
        assert deployment["enforce_parameter_schema"] is True, name
        assert deployment["pull_steps"] == [
            {"logistics_pipeline.tasks.orchestration.project.enter_project_directory": {}}
        ], f"{name}: the project folder must be resolved by the worker, not baked in at deploy time"


def test_parent_runs_one_at_a_time(stack):
    deployment = stack.deployment(parent_deployment())
    assert deployment["global_concurrency_limit"]["limit"] == 1
    assert deployment["concurrency_options"]["collision_strategy"] == "ENQUEUE"


def test_server_lists_the_schedules_of_prefect_yaml(stack):
    for spec in prefect_yaml()["deployments"]:
        name = f"{flow_name(spec['entrypoint'])}/{spec['name']}"
        listed = [
            (s["schedule"].get("cron"), s["schedule"].get("timezone"), s["active"]) for s in stack.deployment(name)["schedules"]
        ]
        expected = [(s["cron"], s.get("timezone", "UTC"), s.get("active", True)) for s in spec.get("schedules") or []]
        assert sorted(listed, key=repr) == sorted(expected, key=repr), name
    parent = stack.deployment(parent_deployment())["schedules"]
    assert [s["active"] for s in parent] == [True], "the parent runs daily"
    (producer,) = [d for d in prefect_yaml()["deployments"] if d["entrypoint"].startswith("flows/produce.py")]
    assert [s["active"] for s in stack.deployment(f"produce-messages/{producer['name']}")["schedules"]] == [False]


def test_parameters_are_typed_and_described_for_the_form(stack):
    """The UI renders the parameter schema as a form: every parameter has a type and a text."""
    undescribed = []
    for spec in prefect_yaml()["deployments"]:
        name = f"{flow_name(spec['entrypoint'])}/{spec['name']}"
        properties = stack.deployment(name)["parameter_openapi_schema"]["properties"]
        assert properties, f"{name} has no parameters"
        for parameter, schema in properties.items():
            assert "type" in schema or "anyOf" in schema or "$ref" in schema or "allOf" in schema, (name, parameter)
            if not schema.get("description"):
                undescribed.append(f"{name}:{parameter}")
    orders = stack.deployment(parent_deployment())["parameter_openapi_schema"]["properties"]["orders"]
    assert orders["type"] == "integer" and orders["minimum"] == 0
    assert not undescribed, (
        "parameters without a description in the deployment's form (Prefect takes descriptions from the "
        f"flow docstring's Args: section, not from Annotated[..., Field(description=...)]): {undescribed}"
    )


# --- runs --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_run(stack) -> Path:
    """The parent through `prefect deployment run --watch`, into its own lake."""
    lake = stack.tmp / "lake-cli"
    result = stack.cli(
        PREFECT, "deployment", "run", parent_deployment(), "--param", f"lake={lake}",
        "--watch", "--watch-timeout", str(RUN_TIMEOUT_S), timeout=RUN_TIMEOUT_S + 60,
    )
    assert result.returncode == 0 and "Completed" in result.stdout, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}\n{stack.logs()}"
    return lake


def test_cli_run_completes_and_builds_gold(cli_run):
    rows = gold_rows(cli_run)
    assert all(count > 0 for count in rows.values()), rows


@pytest.fixture(scope="module")
def python_run(stack, python_api) -> tuple[Any, Path]:
    """The parent through `run_deployment` from Python, with orders streamed first."""
    from prefect.deployments import run_deployment

    lake = stack.tmp / "lake-python"
    flow_run = run_deployment(parent_deployment(), parameters={"lake": str(lake), "orders": 25}, timeout=RUN_TIMEOUT_S)
    assert flow_run.state is not None and flow_run.state.is_completed(), f"{flow_run.state}\n{stack.logs()}"
    return flow_run, lake


def test_run_deployment_from_python_completes_and_builds_gold(python_run):
    flow_run, lake = python_run
    assert flow_run.parameters == {"lake": str(lake), "orders": 25}
    rows = gold_rows(lake)
    assert all(count > 0 for count in rows.values()), rows
    with duckdb.connect(str(lake / "gold.duckdb"), read_only=True) as connection:
        streamed = connection.execute("select count(*) from main.fact_orders where source = 'stream'").fetchone()[0]
    assert streamed > 0, "the 25 produced orders did not reach fact_orders"


# --- assets and lineage ------------------------------------------------------------------------


def materialization_edges(stack: Stack, since: datetime, prefixes: list[str]) -> set[tuple[str, str]]:
    """(upstream, asset) for every successful materialization of assets with these key prefixes."""
    body = {
        "filter": {
            "occurred": {"since": since.isoformat()},
            "event": {"name": ["prefect.asset.materialization.succeeded"]},
            "any_resource": {"id_prefix": prefixes},
        },
        "limit": 50,
    }
    page = stack.api("POST", "/events/filter", json=body)
    edges: set[tuple[str, str]] = set()
    for _ in range(100):
        for event in page["events"]:
            asset = event["resource"]["prefect.resource.id"]
            for related in event["related"]:
                if related.get("prefect.resource.role") == "asset":
                    edges.add((related["prefect.resource.id"], asset))
        if not page.get("next_page"):
            break
        response = httpx.get(page["next_page"], timeout=30)
        response.raise_for_status()
        page = response.json()
    return edges


def expected_edges(lake: Path, streamed: bool) -> set[tuple[str, str]]:
    """source CSV -> bronze -> silver -> dbt source -> gold, with the keys tasks/orchestration/assets.py makes."""
    from logistics_pipeline.tasks.core.contract import KAFKA_ORDERS, SOURCES, STREAM_ORDERS
    from logistics_pipeline.tasks.core.silver import SILVER_TABLES
    from logistics_pipeline.tasks.orchestration.assets import (
        dbt_source_asset,
        gold_asset,
        landing_asset,
        source_asset,
        table_asset,
    )
    from logistics_pipeline.tasks.settings import DEFAULT_SOURCE_DIR

    root = str(lake)
    edges = {(source_asset(s.path(DEFAULT_SOURCE_DIR)).key, table_asset(root, "bronze", s.table).key) for s in SOURCES}
    silver_tables = [t.name for t in SILVER_TABLES]
    edges |= {(table_asset(root, "bronze", t.bronze).key, table_asset(root, "silver", t.name).key) for t in SILVER_TABLES}
    if streamed:
        edges.add((landing_asset(root).key, table_asset(root, "bronze", KAFKA_ORDERS).key))
        edges.add((table_asset(root, "bronze", KAFKA_ORDERS).key, table_asset(root, "silver", STREAM_ORDERS).key))
        silver_tables.append(STREAM_ORDERS)
    edges |= {(table_asset(root, "silver", t).key, dbt_source_asset(t).key) for t in silver_tables}
    manifest = json.loads((lake / "_dbt" / "target" / "manifest.json").read_text())
    for node in manifest["nodes"].values():
        if node["resource_type"] == "model" and node["name"] in GOLD_TABLES:
            for upstream in node["depends_on"]["nodes"]:
                kind, _, rest = upstream.partition(".")
                table = rest.split(".")[-1]
                source_key = dbt_source_asset(table).key if kind == "source" else gold_asset(table).key
                edges.add((source_key, gold_asset(node["name"]).key))
    return edges


@pytest.mark.parametrize("run", ["cli_run", "python_run"])
def test_server_lists_assets_with_their_upstream_assets(stack, run, request):
    fixture = request.getfixturevalue(run)
    lake = fixture if isinstance(fixture, Path) else fixture[1]
    from logistics_pipeline.tasks.orchestration.assets import asset_key
    from logistics_pipeline.tasks.settings import DEFAULT_SOURCE_DIR

    expected = expected_edges(lake, streamed=run == "python_run")
    since = datetime.now(timezone.utc) - timedelta(hours=2)
    prefixes = [asset_key(lake), "duckdb://gold/"]
    deadline = time.monotonic() + 60  # events reach the API after the server's persister flushes
    while True:
        listed = materialization_edges(stack, since, prefixes)
        missing = expected - listed
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(2)
    source_prefix = asset_key(DEFAULT_SOURCE_DIR)
    assert not missing, (
        f"{len(missing)} of {len(expected)} lineage edges are not on the server:\n"
        + "\n".join(f"  {up} -> {down}" for up, down in sorted(missing))
        + f"\nlisted ({len(listed)}):\n"
        + "\n".join(f"  {up} -> {down}" for up, down in sorted(listed) if up.startswith((source_prefix, prefixes[0], "duckdb")))
    )


# --- refusals, alerts, concurrency -------------------------------------------------------------


def flow_run_count(stack: Stack, deployment_id: str) -> int:
    return stack.api("POST", "/flow_runs/count", json={"deployments": {"id": {"any_": [deployment_id]}}})


def test_bad_parameter_is_refused_before_any_run_exists(stack, python_api):
    from prefect.deployments import run_deployment

    deployment_id = stack.deployment(parent_deployment())["id"]
    before = flow_run_count(stack, deployment_id)

    result = stack.cli(PREFECT, "deployment", "run", parent_deployment(), "--param", "orders=-1")
    assert result.returncode != 0
    message = " ".join((result.stdout + result.stderr).split())
    assert "Validation failed for field 'orders'" in message and "-1 is less than the minimum of 0" in message, message

    with pytest.raises(Exception, match=r"Validation failed for field 'orders'.*minimum of 0"):
        run_deployment(parent_deployment(), parameters={"orders": -1}, timeout=0)

    assert flow_run_count(stack, deployment_id) == before, "a refused run must not exist"


@contextmanager
def webhook_receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A JSON webhook on 127.0.0.1 that keeps what it receives."""
    received: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            received.append(json.loads(body or b"{}"))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/alerts", received
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def alerts(stack) -> Iterator[list[dict[str, Any]]]:
    """The alert automation applied as the README says, notifying a local webhook block."""
    automations = [sys.executable, str(ROOT / "deployments" / "automations.py")]
    with webhook_receiver() as (url, received):
        saved = stack.cli(*automations, "save-block", "--block", "custom-webhook/e2e-alerts", "--url", url)
        assert saved.returncode == 0, saved.stderr
        for _ in range(2):  # applying twice updates, never duplicates
            applied = stack.cli(*automations, "apply", "--block", "custom-webhook/e2e-alerts")
            assert applied.returncode == 0, applied.stderr
        yield received


def test_alert_automation_is_applied(stack, alerts):
    shown = stack.cli(sys.executable, str(ROOT / "deployments" / "automations.py"), "show")
    (automation,) = json.loads(shown.stdout)
    assert automation["enabled"]
    assert set(automation["trigger"]["expect"]) == {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"}
    assert automation["trigger"]["match_related"]["prefect.resource.name"] == flow_name(PARENT_ENTRYPOINT)
    (action,) = automation["actions"]
    assert action["type"] == "send-notification"
    assert stack.api("GET", f"/block_documents/{action['block_document_id']}")["name"] == "e2e-alerts"


@pytest.fixture(scope="module")
def failed_runs(stack, python_api, alerts) -> list[Any]:
    """Two parent runs requested together that fail fast (no such exports)."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    params = {"source_dir": str(stack.tmp / "no-such-exports"), "lake": str(stack.tmp / "lake-failed")}
    requested = [run_deployment(parent_deployment(), parameters=params, timeout=0) for _ in range(2)]
    deadline = time.monotonic() + RUN_TIMEOUT_S
    with get_client(sync_client=True) as client:
        while True:
            runs = [client.read_flow_run(run.id) for run in requested]
            if all(run.state and run.state.is_final() for run in runs) or time.monotonic() > deadline:
                break
            time.sleep(2)
    assert all(run.state.is_final() for run in runs), f"{[run.state for run in runs]}\n{stack.logs()}"
    return runs


def test_failed_parent_runs_notify_through_the_automation(failed_runs, alerts):
    for run in failed_runs:
        assert run.state.is_failed(), run.state
        assert "file not found" in (run.state.message or ""), run.state.message
    names = {run.name for run in failed_runs}
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        notified = {name for name in names for alert in alerts if name in alert.get("body", "")}
        if notified == names:
            break
        time.sleep(1)
    assert notified == names, f"no notification within 90 s for {sorted(names - notified)} (received: {alerts})"
    alert = next(alert for alert in alerts if failed_runs[0].name in alert["body"])
    assert "Failed" in alert["subject"] and "file not found" in alert["body"], alert


def test_two_parent_runs_never_overlap(failed_runs):
    """The second run waits for the first (ENQUEUE); the limit is the same for any run."""
    first, second = sorted(failed_runs, key=lambda run: run.start_time)
    assert first.end_time <= second.start_time, (
        f"runs overlapped: {first.name} {first.start_time}..{first.end_time}, {second.name} {second.start_time}..{second.end_time}"
    )
