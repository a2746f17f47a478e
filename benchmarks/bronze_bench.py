"""Bronze CSV ingest alone: seconds and peak RSS of `tasks.local.bronze.ingest_csv` per source file.

    .venv/bin/python -m benchmarks.bronze_bench --scale 30 [--data DIR] [--repeat 2]

No Prefect server and no flow: only the check (`fingerprint_csv`) and the ingest into a new
temporary lake, so that the numbers show what reading and writing one file costs. CPU seconds (all
threads, checks included, per ingest of every file) are less noisy on a shared machine than the
best wall time. Peak RSS is this process's maximum (`ru_maxrss`), which includes generating the data when it is not there
yet: pass `--data` with an existing folder (or run twice) for a clean memory figure.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

from benchmarks.common import DATA_DIR, scale_tag


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=30)
    parser.add_argument("--data", type=Path, help="source folder (generated there when missing)")
    parser.add_argument("--repeat", type=int, default=1, help="ingest every file this many times; the best time counts")
    args = parser.parse_args()

    from logistics_pipeline.datasets.generate import generate_datasets
    from logistics_pipeline.tasks.core.contract import SOURCES
    from logistics_pipeline.tasks.core.csv_source import fingerprint_csv
    from logistics_pipeline.tasks.local.bronze import ingest_csv

    data = args.data or DATA_DIR / f"bronze-{scale_tag(args.scale)}"
    if not (data / SOURCES[0].relative_path).is_file():
        generate_datasets(data, scale=args.scale, seed=1)
    seconds: dict[str, float] = {}
    rows: dict[str, int] = {}
    cpu_before = _cpu_seconds()
    for source in SOURCES:
        path = source.path(data)
        best = float("inf")
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory(prefix="bronze-bench-") as lake:
                started = time.perf_counter()
                rows[source.table] = ingest_csv(path, source, f"{lake}/bronze/{source.table}", fingerprint_csv(path, source))
                best = min(best, time.perf_counter() - started)
        seconds[source.table] = round(best, 3)
    print(json.dumps({
        "scale": args.scale,
        "total_seconds": round(sum(seconds.values()), 3),
        "cpu_seconds_per_ingest": round((_cpu_seconds() - cpu_before) / args.repeat, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "largest_file_mib": round(max(source.path(data).stat().st_size for source in SOURCES) / 2**20, 1),
        "seconds": seconds,
        "rows": rows,
    }))


def _cpu_seconds() -> float:
    """User + system CPU of this process (all threads): less sensitive to a busy machine than wall time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
