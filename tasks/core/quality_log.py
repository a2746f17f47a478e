"""Quality over time: every silver run appends what it counted, per table and per rule, to one
lake table (``quality/silver``; on Unity Catalog ``quality_silver``), which gold exposes as the
model ``silver_quality`` and ``logistics-pipeline quality`` reads back as a trend.

One row per run, table and rule: the run's id and time, the engine, the table's rows in, out,
quarantined and merged, and the rows that rule quarantined (0 when none: a rule's trend has
no gaps). A table that was not rebuilt reports the counts of its last build, so every run
holds every table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Protocol

import polars as pl

from logistics_pipeline.tasks.core.contract import STREAM_ORDERS
from logistics_pipeline.tasks.core.quality import TableCounts
from logistics_pipeline.tasks.core.silver import MALFORMED_ROW, SILVER_TABLES
from logistics_pipeline.tasks.core.stream import STREAM_RULES

QUALITY_LAYER, QUALITY_TABLE = "quality", "silver"
QUALITY_SCHEMA = pl.Schema({
    "run_id": pl.String,
    "run_at": pl.Datetime("us", "UTC"),
    "engine": pl.String,
    "table_name": pl.String,
    "rule": pl.String,
    "rows_in": pl.Int64,
    "rows_out": pl.Int64,
    "quarantined": pl.Int64,
    "merged_duplicates": pl.Int64,
    "rule_quarantined": pl.Int64,
})
RULES_BY_TABLE: dict[str, tuple[str, ...]] = {
    **{table.name: (MALFORMED_ROW.name, *(rule.name for rule in table.rules)) for table in SILVER_TABLES},
    STREAM_ORDERS: tuple(rule.name for rule in STREAM_RULES),
}
"""Every reject rule of every silver table, in the order they are checked."""


class Appends(Protocol):
    def append(self, layer: str, table: str, rows: pl.DataFrame) -> None: ...


def quality_rows(counts: Iterable[TableCounts], run_id: str, run_at: datetime, engine: str) -> pl.DataFrame:
    """The rows one run appends. Counts recorded before rules were counted have one row whose
    rule is null."""
    rows = []
    for c in counts:
        per_rule = c.by_rule
        if c.quarantined and not per_rule:
            pairs: Sequence[tuple[str | None, int]] = [(None, c.quarantined)]
        else:
            pairs = [(rule, per_rule.get(rule, 0)) for rule in RULES_BY_TABLE.get(c.table, tuple(per_rule))]
        for rule, rows_quarantined in pairs:
            rows.append({
                "run_id": run_id, "run_at": run_at, "engine": engine, "table_name": c.table, "rule": rule,
                "rows_in": c.rows_in, "rows_out": c.rows_out, "quarantined": c.quarantined,
                "merged_duplicates": c.merged_duplicates, "rule_quarantined": rows_quarantined,
            })
    return pl.DataFrame(rows, schema=QUALITY_SCHEMA)


def record_quality(store: Appends, counts: Iterable[TableCounts], run_id: str, engine: str, run_at: datetime | None = None) -> pl.DataFrame:
    """Append this run's rows to the lake's quality table (one commit); returns them."""
    rows = quality_rows(counts, run_id, run_at or datetime.now(timezone.utc), engine)
    if rows.height:
        store.append(QUALITY_LAYER, QUALITY_TABLE, rows)
    return rows


# --- reading it back --------------------------------------------------------------------------

STEADY = 0.0005
"""A change of a share below this (0.05 percentage points) is no trend."""


def last_runs(results: pl.DataFrame, runs: int) -> pl.DataFrame:
    """The rows of the latest ``runs`` runs, each with its number in the window (1 = oldest)."""
    order = results.group_by("run_id").agg(pl.col("run_at").min()).sort("run_at", "run_id").tail(runs)
    order = order.with_columns(pl.int_range(1, pl.len() + 1).alias("run"))
    return results.join(order.select("run_id", "run"), on="run_id").with_columns(
        (pl.col("rule_quarantined") / pl.col("rows_in")).fill_nan(0.0).fill_null(0.0).alias("share")
    )


def trend(shares: Sequence[float]) -> str:
    """The latest share against the mean of the runs before it, in percentage points."""
    if len(shares) < 2:
        return "one run, no trend"
    change = shares[-1] - sum(shares[:-1]) / len(shares[:-1])
    if abs(change) < STEADY:
        return "steady"
    return f"{'rising' if change > 0 else 'falling'} ({change * 100:+.2f} pt)"


def quality_report(results: pl.DataFrame, runs: int = 7, table: str | None = None) -> list[str]:
    """Lines to print: the runs, then per table its latest counts and, per rule that quarantined
    any row in these runs, the share of rows in per run (oldest first) and the trend."""
    if table is not None:
        results = results.filter(pl.col("table_name") == table)
    if results.is_empty():
        return ["no quality results" + (f" for table {table}" if table else "")]
    window = last_runs(results, runs)
    run_list = window.select("run", "run_id", "run_at", "engine").unique("run").sort("run")
    lines = [f"last {run_list.height} silver runs (oldest first):"]
    lines += [f"  run {r['run']}: {r['run_at']:%Y-%m-%d %H:%M:%S} UTC  {r['engine']}  {r['run_id']}" for r in run_list.iter_rows(named=True)]
    header = "rule: share of rows in"
    width = max(len(header), *(len(name) for name in window["rule"].fill_null("(rules not counted)"))) + 2
    lines += ["", f"  {header:<{width}}" + " ".join(f"{f'run {n}':>7}" for n in run_list["run"]) + "   trend"]
    for name in sorted(window["table_name"].unique()):
        rows = window.filter(pl.col("table_name") == name)
        latest = rows.filter(pl.col("run") == rows["run"].max()).row(0, named=True)
        lines.append("")
        lines.append(
            f"{name}: {latest['rows_in']} in, {latest['rows_out']} out, {latest['quarantined']} quarantined, "
            f"{latest['merged_duplicates']} merged (run {latest['run']})"
        )
        quiet = shown = 0
        for rule, per_rule in rows.group_by("rule", maintain_order=True):
            per_rule = per_rule.sort("run")
            if per_rule["rule_quarantined"].sum() == 0:
                quiet += 1
                continue
            shown += 1
            shares = per_rule["share"].to_list()
            cells = " ".join(f"{share * 100:6.2f}%" for share in shares)
            label = rule[0] if rule[0] is not None else "(rules not counted)"
            lines.append(f"  {label:<{width}}{cells}   {trend(shares)}   ({per_rule['rule_quarantined'][-1]} of {per_rule['rows_in'][-1]} rows)")
        if quiet:
            lines.append(f"  {quiet} more rules quarantined nothing in these runs" if shown else f"  none of its {quiet} rules quarantined a row in these runs")
    return lines
