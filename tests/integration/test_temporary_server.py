"""A command without PREFECT_API_URL waits for its temporary server as long as the project says
(``tasks/orchestration/server.py``), not Prefect's 20 s, which a first start in a new
PREFECT_HOME outlasted on a busy machine; a user's own PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS
wins; Prefect's clients use the server the command started; and that server records task runs
as ``SQLITE_SERVER_SETTINGS`` says, but for what the user set. Each case runs in a child
process with a new PREFECT_HOME, as a new user's first command does."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from logistics_pipeline.tasks.orchestration.server import SQLITE_SERVER_SETTINGS
from tests.cli_runner import ROOT

CHILD = """
import json, sys, time
from logistics_pipeline.tasks.orchestration import server
if sys.argv[1] != "default":
    server.STARTUP_TIMEOUT_SECONDS = float(sys.argv[1])
began = time.perf_counter()
try:
    server.start_temporary_server()
except RuntimeError as error:
    print(json.dumps({"error": str(error)[:200], "seconds": time.perf_counter() - began}))
    sys.exit(0)
from prefect.client.orchestration import get_client
from prefect.server.api.server import SubprocessASGIServer
with get_client(sync_client=True) as client:
    used = str(client.api_url).rstrip("/")
    client.hello()
    recorder = client.request("GET", "/admin/settings").json()["server"]["services"]["task_run_recorder"]
print(json.dumps({"started": SubprocessASGIServer().api_url.rstrip("/"), "used": used, "recorder": recorder}))
server.stop_temporary_server()
"""


def child(tmp_path, timeout: str, env: dict[str, str] | None = None) -> dict:
    unset = {"PREFECT_API_URL", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", *SQLITE_SERVER_SETTINGS}
    environment = {k: v for k, v in os.environ.items() if k not in unset}
    environment |= {"PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"} | (env or {})
    done = subprocess.run([sys.executable, "-c", CHILD, timeout], capture_output=True, text=True, env=environment, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_command_waits_as_long_as_the_project_says(tmp_path):
    """With the project's wait cut to 0.5 s, a new home's first start times out after it, not after 20 s."""
    result = child(tmp_path, "0.5")
    assert "Timed out while attempting to connect to ephemeral Prefect API server" in result["error"]
    assert result["seconds"] < 15


def test_a_users_own_startup_timeout_wins(tmp_path):
    result = child(tmp_path, "default", {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "1"})
    assert "Timed out while attempting to connect to ephemeral Prefect API server" in result["error"]
    assert result["seconds"] < 15


def test_prefects_clients_use_the_server_the_command_started_with_the_sqlite_settings(tmp_path):
    result = child(tmp_path, "default", {"PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "7"})
    assert result["used"] == result["started"]
    assert (result["recorder"]["batch_size"], result["recorder"]["flush_interval"]) == (7, 1.0), "the user's batch size, the project's interval"
