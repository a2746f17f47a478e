"""What a job run reports. ``tasks.spark.job`` prints its summary as its last stdout line, one
JSON object ``{"layer", "tables", "failed"}``, and a one-line ``error: ...`` on stderr when it
fails; runs/get-output returns both in ``logs`` (the last 5 MB of a python_wheel_task's or
spark_python_task's output). Read here and turned into what the local engine's layers return.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from logistics_pipeline.tasks.core.contract import KAFKA_ORDERS
from logistics_pipeline.tasks.core.quality import TableCounts
from logistics_pipeline.tasks.errors import PipelineError, one_line


def job_summary(logs: str | None, layer: str) -> dict[str, Any] | None:
    """The last JSON line of the output that is the summary of ``layer``, or None."""
    for line in reversed((logs or "").splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and value.get("layer") == layer and isinstance(value.get("tables"), list):
            return value
    return None


def job_error(logs: str | None) -> str | None:
    """The job's own one-line reason for failing (``error: ...``, the last such line), or None."""
    for line in reversed((logs or "").splitlines()):
        if line.startswith("error: "):
            return one_line(line.removeprefix("error: "))
    return None


@dataclass(frozen=True)
class BronzeTable:
    """A bronze table after a run, as the local bronze-layer reports it."""

    table: str
    rows: int
    ingested: bool


def bronze_tables(summary: dict[str, Any]) -> list[BronzeTable]:
    """The bronze tables of a bronze or stream summary; ``ingested`` is false when the run
    found the content already in the table (a skipped file, no new messages)."""
    try:
        if summary["layer"] == "stream":
            return [BronzeTable(KAFKA_ORDERS, int(t["rows"]), int(t["new_rows"]) > 0) for t in summary["tables"]]
        return [BronzeTable(str(t["table"]), int(t["rows"]), not t["skipped"]) for t in summary["tables"]]
    except (KeyError, TypeError, ValueError) as error:
        raise _unreadable(summary, error) from None


def silver_counts(summary: dict[str, Any]) -> list[TableCounts]:
    """Rows in, out, quarantined and merged per silver table (counts that do not add up raise)."""
    try:
        return [TableCounts(**t) for t in summary["tables"]]
    except (KeyError, TypeError) as error:
        raise _unreadable(summary, error) from None


def _unreadable(summary: dict[str, Any], error: Exception) -> PipelineError:
    return PipelineError(
        f"the {summary.get('layer')} run's summary is not what this version reads ({type(error).__name__}: {one_line(error)}): "
        "is the job wheel from the same version as the flow?"
    )
