"""The benchmark of issue 14: `python -m benchmarks.run [--quick]` (make bench / make bench-quick).

Every ratio is measured side by side in this one run, on the same data and machine:
  silver_rows_per_s     project silver vs pandas vs DuckDB            (benchmarks/silver_bench.py)
  produce_msgs_per_s    project producer vs Kafka ProducerPerformance (benchmarks/kafka_bench.py)
  ingest_msgs_per_s     project ingestion vs Kafka ConsumerPerformance
  pipeline_seconds      `logistics-pipeline run` vs one DuckDB script  (benchmarks/pipeline_bench.py)
  pipeline_cpu_seconds, peak_rss_mb, first_run_seconds, noop_rerun_seconds
`goals` judges them against issue 14's goals (benchmarks/goals.py).

Progress goes to stderr. The result is one JSON object, printed as the last line of stdout and
written to benchmarks/out/latest.json (and a timestamped copy). A section that cannot run
leaves its keys null and says why under "unavailable".
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
import traceback
from datetime import datetime, timezone
from typing import Any

from benchmarks.common import OUT_DIR, compile_project, dataset, log, machine, versions
from benchmarks.goals import goals_met, issue14_goals

# Quick: four CLI runs of about 20-40 s each would not fit in 4 minutes on a busy 2-core machine,
# so the pipeline runs at scale 1 (first run, then the no-op rerun) and 2 only.
QUICK = {
    "silver_scale": 2.0,
    "silver_repeats": 2,
    "pandas_repeats": 1,
    "kafka_messages": 100_000,
    "pipeline_scales": [1.0, 2.0],
    "noop_rerun_scales": [1.0],
    "temporary_server_check": False,
    "perf_tool_with_project_batching": False,
}
FULL = {
    "silver_scale": 30.0,
    "silver_repeats": 2,
    "pandas_repeats": 1,
    "kafka_messages": 1_000_000,
    "pipeline_scales": [1.0, 10.0, 30.0, 100.0, 300.0],
    "noop_rerun_scales": [1.0, 30.0],  # 30 for the goal, 1 as detail
    "temporary_server_check": True,
    "perf_tool_with_project_batching": True,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes; finishes in under 4 minutes")
    parser.add_argument("--only", nargs="*", choices=["silver", "kafka", "pipeline"], help="run only these sections (for development)")
    parser.add_argument("--scales", nargs="+", type=float, metavar="SCALE",
                        help="pipeline scale factors instead of the variant's (for development), e.g. --scales 1 30")
    args = parser.parse_args(argv)
    config = dict(QUICK if args.quick else FULL)
    if args.scales:
        if any(scale <= 0 for scale in args.scales):
            parser.error("--scales: every scale factor must be positive")
        config["pipeline_scales"] = sorted(set(args.scales))
    sections = set(args.only or ["silver", "kafka", "pipeline"])
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    result: dict[str, Any] = {
        "variant": "quick" if args.quick else "full",
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "config": config,
        "sections": sorted(sections),
    }
    unavailable: dict[str, str] = {}
    errors: dict[str, str] = {}

    # --- services and data: a Prefect server and a Kafka broker boot while the data is generated
    from benchmarks import kafka_bench, pipeline_bench

    broker: kafka_bench.BrokerHandle | None = None
    broker_error: list[str] = []
    server: pipeline_bench.PrefectServer | None = None

    def boot_broker() -> None:
        nonlocal broker
        try:
            broker = kafka_bench.broker_from_env_or_start()
        except Exception as error:  # noqa: BLE001
            broker_error.append(f"{type(error).__name__}: {error}"[:800])
            log(f"kafka: no broker ({broker_error[0]})")

    broker_thread = threading.Thread(target=boot_broker, daemon=True)
    if "kafka" in sections:
        broker_thread.start()
    try:
        server = pipeline_bench.start_prefect_server()
        # the harness's own flows (the Kafka sections) use the same server; set before prefect is imported
        os.environ["PREFECT_API_URL"] = server.api_url
        os.environ["PREFECT_HOME"] = str(server.home)
        os.environ["PREFECT_LOCAL_STORAGE_PATH"] = str(OUT_DIR / f"prefect-results-{os.getpid()}")
        os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
        compile_project()
        needed = ({config["silver_scale"]} if "silver" in sections else set()) | (set(config["pipeline_scales"]) if "pipeline" in sections else set())
        for scale in sorted(needed):
            dataset(scale)  # generated in chunks: the harness never holds a whole dataset
        if "kafka" in sections:
            broker_thread.join()

        if "silver" in sections:
            from benchmarks.silver_bench import silver_section

            try:
                result.update(silver_section(config["silver_scale"], config["silver_repeats"], config["pandas_repeats"]))
            except Exception as error:  # noqa: BLE001
                errors["silver"] = traceback.format_exc()[-3000:]
                log(f"silver section failed: {error}")

        if "kafka" in sections:
            try:
                result.update(kafka_bench.kafka_section(
                    config["kafka_messages"], broker, broker_error[0] if broker_error else None, config["perf_tool_with_project_batching"]
                ))
                unavailable.update(result["kafka_detail"].pop("unavailable", {}))
            except Exception as error:  # noqa: BLE001
                errors["kafka"] = traceback.format_exc()[-3000:]
                log(f"kafka section failed: {error}")
            finally:
                if broker is not None:
                    broker.stop()

        if "pipeline" in sections:
            try:
                result.update(pipeline_bench.pipeline_section(
                    config["pipeline_scales"], server, config["noop_rerun_scales"], config["temporary_server_check"]
                ))
            except Exception as error:  # noqa: BLE001
                errors["pipeline"] = traceback.format_exc()[-3000:]
                log(f"pipeline section failed: {error}")
    finally:
        if broker is not None:
            broker.stop()
        if server is not None:
            server.stop()
        for work in ("prefect-results", "silver", "pipeline"):  # this harness's own folders, left behind by a failed section
            shutil.rmtree(OUT_DIR / f"{work}-{os.getpid()}", ignore_errors=True)

    # --- every key present, goals, versions -------------------------------------------------------
    for key, (section, empty) in {
        "silver_rows_per_s": ("silver", {"project": None, "pandas": None, "duckdb": None}),
        "silver_output_format": ("silver", None),
        "produce_msgs_per_s": ("kafka", {"project": None, "kafka_perf_tool": None, "record_bytes": None}),
        "ingest_msgs_per_s": ("kafka", {"project": None, "kafka_perf_tool": None}),
        "pipeline_seconds": ("pipeline", None),
        "pipeline_cpu_seconds": ("pipeline", None),
        "peak_rss_mb": ("pipeline", None),
        "first_run_seconds": ("pipeline", None),
        "noop_rerun_seconds": ("pipeline", None),
    }.items():
        if key not in result:
            result[key] = empty
            unavailable.setdefault(key, "section not run (--only)" if section not in sections else "section failed; see errors")

    result["unavailable"] = unavailable
    result["goals"] = issue14_goals(result)
    result["goals_met"] = goals_met(result["goals"])
    result["errors"] = errors
    result["versions"] = versions({"kafka": _kafka_version()})
    result["code"] = _code_state()
    result["seconds_total"] = round(time.perf_counter() - began, 1)
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]

    text = json.dumps(result, default=str)
    (OUT_DIR / "latest.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    (OUT_DIR / f"{result['variant']}-{stamp}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    log(f"done in {result['seconds_total']}s; goals met: {result['goals_met']}; written to {OUT_DIR / 'latest.json'}")
    sys.stderr.flush()
    print(text, flush=True)
    return 0


def _code_state() -> dict[str, Any]:
    """Which code was measured: the commit and the files that differ from it (read-only git)."""
    import subprocess

    from benchmarks.common import PROJECT_ROOT

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=30)
        return done.stdout if done.returncode == 0 else ""

    changed = [line[3:] for line in git("status", "--porcelain").splitlines() if line[3:] and not line[3:].startswith("benchmarks/")]
    return {"commit": git("rev-parse", "HEAD").strip() or None, "uncommitted_files_outside_benchmarks": changed}


def _kafka_version() -> str | None:
    try:
        from benchmarks.kafka_bench import local_kafka

        return local_kafka().KAFKA_VERSION
    except Exception:  # noqa: BLE001
        return None


if __name__ == "__main__":
    sys.exit(main())
