"""The fixed cost of a small run: what the pipeline's entry points import before any work.

The Databricks SDK, dbt and prefect-dbt each take a second or more to import; a local run
imports dbt only when gold is built, and the SDK never."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("databricks.sdk", "prefect_databricks", "dbt", "prefect_dbt", "pyspark", "pandas")


@pytest.mark.parametrize("module", ["logistics_pipeline.flows.cli", "logistics_pipeline.flows.pipeline"])
def test_entry_points_import_no_heavy_optional_library(module):
    probe = f"import json, sys, {module}; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == [], f"{module} imports them at start-up"


ROOT = Path(__file__).resolve().parents[2]


def test_the_worker_image_compiles_the_project_so_that_no_run_compiles_it():
    """The worker image sets PYTHONDONTWRITEBYTECODE and installs the project editable, as
    source: without its compile step, every flow run's process compiled the project's modules
    again. After the Dockerfile's compileall, the CLI and the pipeline load them all as bytecode."""
    dockerfile = (ROOT / "deployments" / "Dockerfile").read_text()
    command = re.search(r"python -m compileall [^&\\\n]+", dockerfile)
    assert command, "the Dockerfile does not compile the project"
    subprocess.run([sys.executable, *command.group(0).split()[1:]], cwd=ROOT, check=True)

    probe = "import logistics_pipeline.flows.cli, logistics_pipeline.flows.pipeline"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    verbose = subprocess.run([sys.executable, "-v", "-c", probe], capture_output=True, text=True, check=True, env=env, cwd=ROOT).stderr
    loaded = re.findall(r"^# code object from '?(.+?)'?$", verbose, flags=re.MULTILINE)
    project = [path for path in loaded if Path(path).is_relative_to(ROOT) and ".venv" not in Path(path).parts]
    assert len(project) > 20, verbose[-2000:]
    from_source = [path for path in project if path.endswith(".py")]
    assert from_source == [], f"compiled in the run, not in the image: {from_source}"
