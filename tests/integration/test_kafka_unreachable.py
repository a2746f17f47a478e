"""An unreachable broker: produce and bronze retry with backoff, then fail in bounded time
with one line that names the bootstrap servers. They never hang."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("prefect_server")

ROOT = Path(__file__).resolve().parents[2]


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("command", [["produce", "--orders", "10"], ["bronze"]], ids=["produce", "bronze"])
def test_unreachable_broker_fails_fast_naming_the_servers(tmp_path, command):
    from prefect.settings import PREFECT_API_URL

    bootstrap = f"127.0.0.1:{unused_port()}"
    env = os.environ | {"PREFECT_API_URL": PREFECT_API_URL.value()}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "logistics_pipeline.flows.cli", *command, "--bootstrap-servers", bootstrap, "--lake", str(tmp_path / "lake")],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: ") and bootstrap in last_line
    assert "Traceback" not in result.stderr
    assert result.stderr.count("Retry") >= 1 or result.stderr.count("retry") >= 1, "the broker check is retried"
    assert elapsed < 90
