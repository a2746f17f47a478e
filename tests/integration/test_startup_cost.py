"""The fixed cost of a small run: what the pipeline's entry points import before any work.

The Databricks SDK, dbt and prefect-dbt each take a second or more to import; a local run
imports dbt only when gold is built, and the SDK never."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("databricks.sdk", "prefect_databricks", "dbt", "prefect_dbt", "pyspark", "pandas")


@pytest.mark.parametrize("module", ["logistics_pipeline.flows.cli", "logistics_pipeline.flows.pipeline"])
def test_entry_points_import_no_heavy_optional_library(module):
    probe = f"import json, sys, {module}; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == [], f"{module} imports them at start-up"
