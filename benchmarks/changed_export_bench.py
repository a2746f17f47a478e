"""What a changed export costs: `python -m benchmarks.changed_export_bench [--scale S] [--orders N ...]`.

For each stream size, the real CLI builds a lake at export scale S, orders for its customers
and products are produced to the landing folder and ingested by a second run, then one line of sales_details.csv is corrected and the run is repeated:
that rerun is the measured cost. Silver `stream_orders` must not be rebuilt by it (its Delta
version is checked); gold is rebuilt from silver, so its cost grows with the stream's lines,
and the difference between stream sizes is that cost per million stream lines. An unchanged
rerun is measured too. Prints one JSON line; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from deltalake import DeltaTable

from benchmarks.common import OUT_DIR, dataset, fresh_dir, log, log_tail, run_measured
from benchmarks.pipeline_bench import (
    CLI,
    PrefectServer,
    cli_environment,
    start_prefect_server,
)


def cli(args: list[str], server: PrefectServer, label: str):
    run = run_measured([str(CLI), *args], OUT_DIR / f"changed-export-{label}.log", env=cli_environment(server), cwd=OUT_DIR)
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:1])} failed (exit {run.returncode}); log {run.log_path}:\n{log_tail(run.log_path)}")
    return run


def correct_one_line(export: Path) -> None:
    """Double the quantity and sales of the first sales line, as a CRM correction would."""
    path = export / "source_crm" / "sales_details.csv"
    with path.open("r+b") as handle:
        handle.readline()  # the header
        start = handle.tell()
        first = handle.readline()
        rest = handle.read()
        fields = first.rstrip(b"\r\n").split(b",")
        fields[6], fields[7] = str(float(fields[6]) * 2).encode(), str(int(fields[7]) * 2).encode()
        handle.seek(start)
        handle.write(b",".join(fields) + b"\n" + rest)
        handle.truncate()


def measure(scale: float, orders: int, server: PrefectServer) -> dict[str, Any]:
    source, _ = dataset(scale)
    work = fresh_dir(OUT_DIR / "changed-export")
    export, lake = work / "export", work / "lake"
    shutil.copytree(source, export)
    tag = f"s{scale:g}-o{orders}"
    cli(["run", "--source-dir", str(export), "--lake", str(lake)], server, f"{tag}-build")
    if orders:  # orders for the export's own customers and products (read from silver)
        cli(["produce", "--orders", str(orders), "--lake", str(lake), "--seed", "7"], server, f"{tag}-produce")
    first = cli(["run", "--source-dir", str(export), "--lake", str(lake)], server, f"{tag}-first")
    stream_uri = str(lake / "silver" / "stream_orders")
    stream_version, stream_lines = DeltaTable(stream_uri).version(), DeltaTable(stream_uri).count()
    unchanged = cli(["run", "--source-dir", str(export), "--lake", str(lake)], server, f"{tag}-unchanged")
    correct_one_line(export)
    changed = cli(["run", "--source-dir", str(export), "--lake", str(lake)], server, f"{tag}-changed")
    rebuilt_stream = DeltaTable(stream_uri).version() != stream_version
    shutil.rmtree(work, ignore_errors=True)
    result = {
        "scale_factor": scale, "stream_lines": stream_lines,
        "first_run_seconds": round(first.seconds, 2),
        "unchanged_rerun_seconds": round(unchanged.seconds, 2),
        "changed_export_rerun_seconds": round(changed.seconds, 2), "changed_export_rerun_cpu_seconds": changed.cpu_seconds,
        "changed_export_peak_tree_rss_mb": changed.peak_tree_rss_mb,
        "stream_silver_rebuilt": rebuilt_stream,
    }
    log(f"changed export at scale {scale:g} with {stream_lines} stream lines: {result}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=10.0, help="export scale factor (10 is about 600k sales lines)")
    parser.add_argument("--orders", type=int, nargs="+", default=[0, 400_000], help="stream sizes, in orders (about 2.5 lines each)")
    args = parser.parse_args(argv)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    server = start_prefect_server()
    try:
        runs = [measure(args.scale, orders, server) for orders in args.orders]
    finally:
        server.stop()
    low, high = runs[0], runs[-1]
    added = high["stream_lines"] - low["stream_lines"]
    per_million = round((high["changed_export_rerun_seconds"] - low["changed_export_rerun_seconds"]) / added * 1e6, 2) if added > 0 else None
    result = {
        "changed_export": runs,
        "changed_export_seconds_per_million_stream_lines": per_million,
        "stream_silver_rebuilt_by_a_changed_export": any(run["stream_silver_rebuilt"] for run in runs),
        "mechanism": "CRM slice rebuilt from the new snapshot; silver stream_orders untouched; gold tables rebuilt from silver in DuckDB",
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
