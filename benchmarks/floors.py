"""floors: what the pipeline's frameworks cost on their own, below which no run can go.

The fixed-cost goals compare a whole run with a hand-written script (scale 1) and a no-op rerun
with a first run (scale 30). Two measurements say how much of each the frameworks take by
themselves, with none of the pipeline's work:

- ``dbt_build_seconds``: dbt's own command line, ``dbt build`` of the gold project (unit tests
  excluded, as the pipeline builds it) on the silver tables of the scale-1 lake, into a scratch
  DuckDB file; no Prefect, no bronze, no silver. Run twice in one target folder and the second
  timed, so dbt reuses its own saved parse, as a user's `dbt build` does from day to day.
- ``empty_flows_seconds``: a Python process that imports the pipeline's flows (the libraries
  every run imports) and runs a parent flow that calls three sub-flows doing nothing, against
  the harness's Prefect server: the pipeline's shape, with no layer's work in it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import OUT_DIR, fresh_dir, log, log_tail, run_measured

DBT = Path(sys.executable).with_name("dbt")

EMPTY_FLOWS = """
import logistics_pipeline.flows.pipeline  # the libraries, and the flows' set-up, of every run
from prefect import flow

@flow(name="empty-layer")
def layer() -> None:
    pass

@flow(name="empty-pipeline")
def pipeline() -> None:
    for _ in ("bronze", "silver", "gold"):
        layer()

pipeline()
"""


def dbt_build_seconds(lake: Path, env: dict[str, str]) -> float:
    """``dbt build`` of the gold project on ``lake``'s silver, the second of two in one target folder."""
    from logistics_pipeline.tasks.gold.dbt import profile_text
    from logistics_pipeline.tasks.settings import DBT_PROJECT_DIR, load_settings

    work = fresh_dir(OUT_DIR / "floor-dbt")
    (work / "profiles.yml").write_text(profile_text(load_settings(lake=str(lake), dbt_target="local"), str(work / "gold.duckdb")))
    cmd = [
        str(DBT), "build", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(work), "--target", "local",
        "--target-path", str(work / "target"), "--log-path", str(work / "logs"),
        "--exclude-resource-type", "unit_test", "--vars", json.dumps({"lake": str(lake)}),
    ]
    seconds = 0.0
    for attempt in ("first", "timed"):
        (work / "gold.duckdb").unlink(missing_ok=True)
        run = run_measured(cmd, OUT_DIR / f"floor-dbt-{attempt}.log", env=env, cwd=work)
        if run.returncode != 0:
            raise RuntimeError(f"dbt build failed (exit {run.returncode}): {log_tail(run.log_path)}")
        seconds = run.seconds
    return round(seconds, 2)


def empty_flows_seconds(env: dict[str, str]) -> float:
    """A parent flow and three empty sub-flows, in a process that imports the pipeline first."""
    run = run_measured([sys.executable, "-c", EMPTY_FLOWS], OUT_DIR / "floor-empty-flows.log", env=env, cwd=OUT_DIR)
    if run.returncode != 0:
        raise RuntimeError(f"the empty flows failed (exit {run.returncode}): {log_tail(run.log_path)}")
    return round(run.seconds, 2)


def floors(lake: Path, env: dict[str, str]) -> dict[str, Any]:
    """Both floors, with ``lake`` a scale-1 lake the pipeline has built (its silver is read)."""
    began = time.perf_counter()
    result = {"scale_factor": 1.0, "dbt_build_seconds": dbt_build_seconds(lake, env), "empty_flows_seconds": empty_flows_seconds(env)}
    log(f"floors: dbt build alone {result['dbt_build_seconds']:.2f}s, empty parent and sub-flows {result['empty_flows_seconds']:.2f}s "
        f"(measured in {time.perf_counter() - began:.0f}s)")
    return result
