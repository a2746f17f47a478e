"""The silver layer's quality results in Prefect: appended to the lake's quality table with the
flow run's id, shown per rule in the silver-layer artifact, and held against the thresholds
(``LOGISTICS_QUALITY_WARN_SHARE`` / ``_FAIL_SHARE``, see ``tasks.core.thresholds``)."""

from __future__ import annotations

from datetime import datetime

from prefect import get_run_logger
from prefect.runtime import flow_run

from logistics_pipeline.tasks.core.quality import TableCounts
from logistics_pipeline.tasks.core.quality_log import Appends, record_quality
from logistics_pipeline.tasks.core.thresholds import FAIL_SETTING, WARN_SETTING, check_limits, enforce
from logistics_pipeline.tasks.settings import QualitySettings


def check_quality_settings(settings: QualitySettings) -> None:
    """A threshold naming no table or rule fails the layer before anything is built."""
    check_limits(settings.warn_share, WARN_SETTING)
    check_limits(settings.fail_share, FAIL_SETTING)


def record_silver_quality(store: Appends, counts: list[TableCounts], run_at: datetime) -> None:
    """This run's counts per table and rule, with the silver-layer flow run's id, in the lake."""
    record_quality(store, counts, run_id=str(flow_run.id), engine="local", run_at=run_at)


def enforce_thresholds(counts: list[TableCounts], settings: QualitySettings) -> None:
    """Log every breach of a warn limit; fail (one line naming each rule and share) on a fail limit."""
    for warning in enforce(counts, settings.warn_share, settings.fail_share):
        get_run_logger().warning(warning)


def artifact_rows(counts: list[TableCounts]) -> list[dict[str, object]]:
    """The silver-layer artifact: per table its counts and what each rule quarantined (rows and share of rows in)."""
    return [
        {
            "table": c.table, "rows_in": c.rows_in, "rows_out": c.rows_out, "quarantined": c.quarantined,
            "merged_duplicates": c.merged_duplicates,
            "quarantined_by_rule": ", ".join(f"{rule} {rows} ({rows / c.rows_in:.2%})" for rule, rows in c.rules) or "-",
        }
        for c in counts
    ]
