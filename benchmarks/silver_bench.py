"""silver_rows_per_s: the project's silver step against pandas and DuckDB on the same bronze tables.

Every engine does the same work for crm_sales_details, crm_cust_info and crm_prd_info: read the
bronze Delta table, tag rows with the first rule they break, write the rejects to quarantine,
cleanse and deduplicate the rest, write silver. The rate is sales lines (rows of bronze
crm_sales_details) per second of the three tables together. Engines run interleaved,
``repeats`` times each, and the fastest run of each counts (the least disturbed by whatever
else the shared machine is doing). Outputs are then read back and compared: row counts and
sums must agree, or the result says so.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from deltalake import DeltaTable

from benchmarks import pandas_silver
from benchmarks.common import (
    BENCH_DIR,
    OUT_DIR,
    dataset,
    fresh_dir,
    log,
    rate,
    sales_lines,
)

TABLES = ("crm_sales_details", "crm_cust_info", "crm_prd_info")
DUCKDB_SQL = BENCH_DIR / "duckdb_silver.sql"
OUTPUT_FORMAT = {"project": "delta", "pandas": "delta", "duckdb": "parquet"}


def build_bronze(source_dir: Path, root: Path) -> dict[str, str]:
    """Bronze Delta tables made by the project's own bronze code (not timed)."""
    from logistics_pipeline.tasks.core.contract import SOURCES_BY_TABLE
    from logistics_pipeline.tasks.core.csv_source import fingerprint_csv
    from logistics_pipeline.tasks.local.bronze import ingest_csv

    uris = {}
    for name in TABLES:
        source = SOURCES_BY_TABLE[name]
        path = source.path(source_dir)
        uri = str(root / "bronze" / name)
        ingest_csv(path, source, uri, fingerprint_csv(path, source))
        uris[name] = uri
    return uris


# --- the three engines ---------------------------------------------------------------------------


def run_project(bronze: dict[str, str], out: Path) -> dict[str, Any]:
    from logistics_pipeline.tasks.core.runner import run_silver_table
    from logistics_pipeline.tasks.core.silver import SILVER_BY_NAME
    from logistics_pipeline.tasks.local.lake import Lake
    from logistics_pipeline.tasks.local.store import DeltaStore

    # the runner reads bronze from its own lake: link the shared bronze tables into it (read only)
    (out / "bronze").mkdir()
    for name in TABLES:
        (out / "bronze" / name).symlink_to(Path(bronze[name]).resolve(), target_is_directory=True)
    lake = Lake(str(out))
    counts = {}
    for name in TABLES:
        c = run_silver_table(DeltaStore(lake), SILVER_BY_NAME[name])
        counts[name] = {"rows_in": c.rows_in, "rows_out": c.rows_out, "quarantined": c.quarantined}
    return counts


def run_pandas(bronze: dict[str, str], out: Path) -> dict[str, Any]:
    return {
        name: pandas_silver.run_table(name, bronze[name], str(out / "silver" / name), str(out / "quarantine" / name))
        for name in TABLES
    }


def duckdb_blocks() -> tuple[str, list[tuple[str, str]]]:
    """(definitions, [(label, statement)]) from duckdb_silver.sql."""
    text = DUCKDB_SQL.read_text()
    head, *blocks = text.split("-- @@ ")
    statements = []
    for block in blocks:
        label, _, body = block.partition("\n")
        statements.append((label.strip(), body.strip()))
    return head, statements


def run_duckdb(bronze: dict[str, str], out: Path, timings: dict[str, float]) -> dict[str, Any]:
    """Delta -> Arrow (deltalake) -> DuckDB statements -> Parquet. ``timings`` gets the parts."""
    definitions, statements = duckdb_blocks()
    con = duckdb.connect()
    try:
        con.execute("set enable_progress_bar = false")
        began = time.perf_counter()
        arrow = {name: DeltaTable(bronze[name]).to_pyarrow_table() for name in TABLES}
        for name, table in arrow.items():
            if "_bronze_error" not in table.column_names:
                table = table.append_column("_bronze_error", pa.nulls(table.num_rows, pa.string()))
            con.register(f"bronze_{name}", table)
        timings["read_delta_to_arrow_s"] = time.perf_counter() - began
        con.execute(definitions)
        began = time.perf_counter()
        for _, statement in statements:
            con.execute(statement.replace("{out}", str(out)))
        timings["statements_s"] = time.perf_counter() - began
        counts = {}
        for name in TABLES:
            counts[name] = {
                "rows_in": arrow[name].num_rows,
                "rows_out": con.execute(f"select count(*) from '{out}/silver_{name}.parquet'").fetchone()[0],
                "quarantined": con.execute(f"select count(*) from '{out}/quarantine_{name}.parquet'").fetchone()[0],
            }
        return counts
    finally:
        con.close()


# --- checks ----------------------------------------------------------------------------------


CHECKS = {
    "crm_sales_details": [
        "count(*)",
        "round(sum(sls_sales), 2)",
        "round(sum(sls_price), 2)",
        "sum(sls_quantity)",
        "sum(sls_cust_id)",
        "count(sls_order_dt)",
        "sum(epoch(sls_ship_dt)::bigint)",
        "count(distinct sls_ord_num)",
    ],
    "crm_cust_info": [
        "count(*)",
        "sum(cst_id)",
        "count(*) filter (cst_gndr = 'Female')",
        "count(*) filter (cst_marital_status = 'n/a')",
        "count(cst_create_date)",
        "sum(epoch(cst_create_date)::bigint)",
        "sum(length(cst_firstname))",
    ],
    "crm_prd_info": [
        "count(*)",
        "round(sum(prd_cost), 2)",
        "count(prd_end_dt)",
        "sum(epoch(prd_end_dt)::bigint)",
        "count(distinct cat_id)",
        "count(*) filter (prd_line = 'n/a')",
    ],
}


def output_sums(engine: str, out: Path) -> dict[str, list]:
    """The check aggregates of each silver table an engine wrote (read back with DuckDB)."""
    con = duckdb.connect()
    sums = {}
    for name in TABLES:
        if OUTPUT_FORMAT[engine] == "delta":
            con.register("t", DeltaTable(str(out / "silver" / name)).to_pyarrow_table())
        else:
            con.execute(f"create or replace view t as select * from '{out}/silver_{name}.parquet'")
        sums[name] = [float(v) if v is not None else None for v in con.execute(f"select {', '.join(CHECKS[name])} from t").fetchall()[0]]
        if OUTPUT_FORMAT[engine] == "delta":
            con.unregister("t")
        else:
            con.execute("drop view t")
    con.close()
    return sums


def compare(results: dict[str, dict[str, list]], counts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    mismatches = []
    reference = results["project"]
    for engine, sums in results.items():
        for name in TABLES:
            for check, mine, theirs in zip(CHECKS[name], sums[name], reference[name], strict=True):
                if mine != theirs and not (mine is not None and theirs is not None and abs(mine - theirs) <= 1e-6 * max(1.0, abs(theirs))):
                    mismatches.append(f"{engine} {name} {check}: {mine} != project {theirs}")
            for key in ("rows_out", "quarantined"):
                if counts[engine][name][key] != counts["project"][name][key]:
                    mismatches.append(f"{engine} {name} {key}: {counts[engine][name][key]} != project {counts['project'][name][key]}")
    return {"same_results": not mismatches, "mismatches": mismatches[:20], "counts": counts["project"]}


# --- the section -----------------------------------------------------------------------------


def silver_section(scale: float, repeats: int, pandas_repeats: int | None = None) -> dict[str, Any]:
    source_dir, rows = dataset(scale)
    lines = sales_lines(rows)
    work = fresh_dir(OUT_DIR / f"silver-{os.getpid()}")  # per harness: two harnesses on one machine never share a lake
    bronze = build_bronze(source_dir, work / "bronze-lake")
    log(f"silver: bronze ready at scale {scale:g} ({lines} sales lines); {repeats} runs per engine")

    best: dict[str, float] = {}
    duckdb_parts: dict[str, float] = {}
    counts: dict[str, Any] = {}
    outputs: dict[str, Path] = {}
    pandas_runs = repeats if pandas_repeats is None else pandas_repeats
    for attempt in range(repeats):
        for engine in ("project", "pandas", "duckdb"):
            if engine == "pandas" and attempt >= pandas_runs:
                continue
            out = fresh_dir(work / f"{engine}-{attempt}")
            parts: dict[str, float] = {}
            began = time.perf_counter()
            if engine == "project":
                counts[engine] = run_project(bronze, out)
            elif engine == "pandas":
                counts[engine] = run_pandas(bronze, out)
            else:
                counts[engine] = run_duckdb(bronze, out, parts)
            seconds = time.perf_counter() - began
            log(f"silver {engine} run {attempt + 1}: {seconds:.2f}s ({lines / seconds:,.0f} sales lines/s)")
            if seconds < best.get(engine, float("inf")):
                best[engine] = seconds
                if engine == "duckdb":
                    duckdb_parts = parts
                if engine in outputs:
                    shutil.rmtree(outputs[engine], ignore_errors=True)
                outputs[engine] = out
            else:
                shutil.rmtree(out, ignore_errors=True)

    checks = compare({engine: output_sums(engine, outputs[engine]) for engine in outputs}, counts)
    shutil.rmtree(work, ignore_errors=True)
    if not checks["same_results"]:
        log("silver: ENGINES DISAGREE: " + "; ".join(checks["mismatches"][:5]))
    duckdb_statement_rate = rate(lines, duckdb_parts.get("statements_s"))
    return {
        "silver_rows_per_s": {engine: rate(lines, best[engine]) for engine in ("project", "pandas", "duckdb")},
        "silver_detail": {
            "scale_factor": scale,
            "sales_lines": lines,
            "seconds": {engine: round(best[engine], 3) for engine in best},
            "runs_per_engine": {"project": repeats, "pandas": pandas_runs, "duckdb": repeats},
            "timing": "best of the runs; each run = read bronze Delta + rules + write silver and quarantine, for the 3 tables",
            "duckdb_parts_s": {k: round(v, 3) for k, v in duckdb_parts.items()},
            "duckdb_statements_only_rows_per_s": duckdb_statement_rate,
            "duckdb_includes": "deltalake Delta->Arrow read + register + the 6 COPY statements (2 per table: silver, quarantine)",
            "project_includes": "logistics_pipeline.tasks.core.runner.run_silver_table per table (lazy Delta scan, narwhals rules, quarantine and merge, batched Delta writes)",
            "pandas_includes": "benchmarks/pandas_silver.py (DeltaTable.to_pandas, apply/np.where/np.select, 2 Delta writes)",
            **checks,
        },
        "silver_output_format": OUTPUT_FORMAT,
    }
