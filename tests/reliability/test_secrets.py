"""Secrets never show up anywhere: known Kafka and Databricks secrets are set (environment and
saved blocks), the flows run through the CLI (some fail on purpose, at the point where the
secret is used), and every output is searched for them: the commands' stdout and stderr,
every file the runs wrote (lakes, landing files, dbt logs and target, the Prefect home of the
runs), the Prefect server's database file, and what the server API gives back: flow-run
parameters, task runs, logs, artifacts and events.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from tests.reliability import CliProcess, cli_env

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow, pytest.mark.kafka]  # its fixture starts a broker

KAFKA_PASSWORD = "s3cr3t-kafka-PASSWORD-7f1"
BLOCK_PASSWORD = "s3cr3t-block-PASSWORD-4d7"
DATABRICKS_TOKEN = "dapi-s3cr3t-TOKEN-9c2"
BLOCK_TOKEN = "dapi-s3cr3t-BLOCK-TOKEN-1a6"
SECRETS = {
    "Kafka password (env)": KAFKA_PASSWORD,
    "Kafka password (block)": BLOCK_PASSWORD,
    "Databricks token (env)": DATABRICKS_TOKEN,
    "Databricks token (block)": BLOCK_TOKEN,
}
# The SASL user name is the API key on Confluent Cloud: kept as a secret by the block too.
KAFKA_USERNAME = "kafka-USER-apikey-8e4"
BLOCK_USERNAME = "block-USER-apikey-5e9"
SECRETS |= {"Kafka user name (env)": KAFKA_USERNAME, "Kafka user name (block)": BLOCK_USERNAME}
UNREACHABLE = "127.0.0.1:1"


def found_in(text: str | bytes) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [name for name, secret in SECRETS.items() if secret.encode() in data]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, request):
    """Run every command at once (most of them wait on a broker or API that never answers)."""
    from prefect_databricks import DatabricksCredentials

    from logistics_pipeline.tasks.kafka.connection import KafkaConnection

    try:
        broker = request.getfixturevalue("kafka_bootstrap")  # a PLAINTEXT broker: SASL fails against it
    except Exception:  # noqa: BLE001 - no Java/Maven here: the unreachable address still makes the point
        broker = UNREACHABLE
    root = tmp_path_factory.mktemp("secrets")
    started = datetime.now(timezone.utc) - timedelta(seconds=5)
    sources = root / "sources"
    from logistics_pipeline.datasets.generate import generate_datasets

    generate_datasets(sources, scale=0.02, seed=9)

    KafkaConnection(
        bootstrap_servers=broker, security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
        username=SecretStr(BLOCK_USERNAME), password=SecretStr(BLOCK_PASSWORD),
    ).save("secrets-test-kafka", overwrite=True)
    DatabricksCredentials(databricks_instance=UNREACHABLE, token=SecretStr(BLOCK_TOKEN)).save("secrets-test-databricks", overwrite=True)

    home = root / "prefect-home"
    home.mkdir()
    base = {
        "PREFECT_HOME": str(home),
        "LOGISTICS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "LOGISTICS_KAFKA_SASL_MECHANISM": "PLAIN",
        "LOGISTICS_KAFKA_USERNAME": KAFKA_USERNAME,
        "LOGISTICS_KAFKA_PASSWORD": KAFKA_PASSWORD,
        "DATABRICKS_HOST": UNREACHABLE,
        "DATABRICKS_TOKEN": DATABRICKS_TOKEN,
        "LOGISTICS_DATABRICKS_API_RETRY_TIMEOUT_SECONDS": "2",
        "LOGISTICS_DATABRICKS_WHEEL_PATH": "/Volumes/main/logistics/artifacts/logistics_pipeline_job-0.1.0-py3-none-any.whl",
    }
    commands = {
        "produce, SASL from env, unreachable": ["produce", "--orders", "10", "--bootstrap-servers", UNREACHABLE],
        "bronze, SASL from env, unreachable": ["bronze", "--bootstrap-servers", UNREACHABLE],
        "produce, SASL block, plaintext broker": ["produce", "--orders", "10", "--kafka-block", "secrets-test-kafka"],
        "bronze, SASL block, plaintext broker": ["bronze", "--kafka-block", "secrets-test-kafka"],
        "run, landing folder, token set": ["run", "--orders", "200", "--bad-fraction", "0.1"],
        "run, engine=databricks, token from env": ["run", "--engine", "databricks"],
        "bronze, engine=databricks, token block": ["bronze", "--engine", "databricks"],
    }
    processes = {}
    for name, args in commands.items():
        extra = dict(base)
        if "token block" in name:
            extra |= {"LOGISTICS_DATABRICKS_CREDENTIALS_BLOCK": "secrets-test-databricks"}
            del extra["DATABRICKS_TOKEN"], extra["DATABRICKS_HOST"]
        lake = root / "lakes" / name.split(",")[0] / str(len(processes))
        processes[name] = CliProcess.start(args, cli_env(lake, sources, **extra))
    codes = {name: process.finish(timeout=600) for name, process in processes.items()}
    time.sleep(3)  # the server persists logs and events asynchronously
    return {"root": root, "home": home, "started": started, "codes": codes, "processes": processes}


def test_the_runs_did_what_was_intended(outputs):
    codes = outputs["codes"]
    assert codes["run, landing folder, token set"] == 0, outputs["processes"]["run, landing folder, token set"].tail()
    failed = {name: code for name, code in codes.items() if name != "run, landing folder, token set"}
    assert set(failed.values()) == {1}, failed
    for name in failed:
        last = outputs["processes"][name].output.strip().splitlines()[-1]
        assert last.startswith("error: "), (name, last)
        print(f"{name}: {last[:200]}")


def test_no_secret_in_any_command_output(outputs):
    leaks = {name: found_in(process.output) for name, process in outputs["processes"].items()}
    assert not any(leaks.values()), leaks


def test_no_secret_in_any_file_the_runs_wrote(outputs):
    """Lakes (Delta logs and data, landing files, gold.duckdb, dbt logs and target) and the runs' Prefect home."""
    files = [path for path in outputs["root"].rglob("*") if path.is_file()]
    assert any(path.match("*/_dbt/logs/dbt.log") for path in files)
    assert any(path.match("*/_dbt/target/manifest.json") for path in files)
    assert any(path.name.endswith(".jsonl") for path in files)
    leaks = {str(path): found_in(path.read_bytes()) for path in files}
    assert not any(leaks.values()), {path: names for path, names in leaks.items() if names}


def test_no_secret_in_the_prefect_server_database():
    """Blocks are stored encrypted; nothing else may hold a secret in clear."""
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

    url = str(PREFECT_SERVER_DATABASE_CONNECTION_URL.value())
    if not url.startswith("sqlite"):
        pytest.skip("the server database is not a SQLite file")
    db = Path(url.split(":///", 1)[1])
    files = [p for p in db.parent.glob(db.name + "*") if p.is_file()]
    assert files
    leaks = {str(p): found_in(p.read_bytes()) for p in files}
    assert not any(leaks.values()), leaks


def api(path: str, body: dict) -> list[dict]:
    from prefect.settings import PREFECT_API_URL

    rows: list[dict] = []
    with httpx.Client(base_url=str(PREFECT_API_URL.value()), timeout=30) as client:
        while True:
            page = client.post(path, json={**body, "offset": len(rows), "limit": 200})
            page.raise_for_status()
            data = page.json()
            rows += data
            if len(data) < 200:
                return rows


def test_no_secret_in_flow_run_parameters_task_runs_logs_artifacts_or_events(outputs):
    since = outputs["started"].isoformat()
    flow_runs = api("/flow_runs/filter", {"flow_runs": {"start_time": {"after_": since}}})
    ours = [run for run in flow_runs if run["parameters"] is not None]
    assert len(ours) >= len(outputs["processes"]), "every command made at least one flow run"
    ids = [run["id"] for run in flow_runs]
    sections = {
        "flow-run parameters": [run["parameters"] for run in flow_runs],
        "flow runs": flow_runs,
        "task runs": api("/task_runs/filter", {"flow_runs": {"id": {"any_": ids}}}),
        "logs": api("/logs/filter", {"logs": {"flow_run_id": {"any_": ids}}}),
        "artifacts": api("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": ids}}}),
    }
    from prefect.settings import PREFECT_API_URL

    with httpx.Client(base_url=str(PREFECT_API_URL.value()), timeout=30) as client:
        events = client.post("/events/filter", json={"filter": {"occurred": {"since": since}}, "limit": 50})
        events.raise_for_status()
        page = events.json()
        sections["events"] = list(page["events"])
        while page.get("next_page"):
            page = client.get(page["next_page"]).json()
            sections["events"] += page["events"]
    assert sections["logs"] and sections["artifacts"] and sections["events"]
    assert any("error" in json.dumps(log).lower() for log in sections["logs"])
    leaks = {name: found_in(json.dumps(rows, default=str)) for name, rows in sections.items()}
    print({name: len(rows) for name, rows in sections.items()})
    assert not any(leaks.values()), leaks
