"""Run the console script in a subprocess against the test session's Prefect server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "logistics_pipeline.flows.cli"]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    from prefect.settings import PREFECT_API_URL

    environment = os.environ | {"PREFECT_API_URL": PREFECT_API_URL.value()} | (env or {})
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=environment, cwd=ROOT, timeout=timeout)
