"""pipeline_seconds, first_run_seconds, noop_rerun_seconds, peak_rss_mb.

`project` is the real CLI, `logistics-pipeline run --source-dir D --lake L --orders 0`, run as
a subprocess, so Python start-up, Prefect and dbt are all included. It talks to one Prefect
server that the harness starts once (as a deployment would); the CLI's own temporary server
would add its start-up (about 10 s) to every run. `duckdb_script` is benchmarks/duckdb_pipeline.sql
run by a fresh Python process on the same CSVs. The gold row counts of both must agree.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import (
    BENCH_DIR,
    OUT_DIR,
    ProcessRun,
    dataset,
    fresh_dir,
    log,
    log_tail,
    ratio,
    run_measured,
    sales_lines,
)

DUCKDB_SCRIPT = BENCH_DIR / "duckdb_pipeline.sql"
GOLD_TABLES = ("dim_customers", "dim_products", "fact_orders")
CLI = Path(sys.executable).with_name("logistics-pipeline")

# The DuckDB script's runner: executes the script in a new database file, then reads back
# the gold row counts and the data tests' failures.
_DUCKDB_RUNNER = """
import json, sys, duckdb
script, source_dir, db, result = sys.argv[1:5]
con = duckdb.connect(db)
con.execute(open(script).read().replace("{source_dir}", source_dir))
counts = {t: con.execute(f"select count(*) from main.{t}").fetchone()[0] for t in ("dim_customers", "dim_products", "fact_orders")}
failing = {test: n for test, n in con.execute("select test, failures from main.test_results").fetchall() if n}
con.close()
json.dump({"gold_rows": counts, "failing_tests": failing}, open(result, "w"))
"""


# --- a shared Prefect server -------------------------------------------------------------------


@dataclass
class PrefectServer:
    process: subprocess.Popen
    api_url: str
    home: Path
    startup_seconds: float
    home_lock: Any = None  # open file holding the lock on a reused home; None for a throwaway home

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.home_lock is None:
            shutil.rmtree(self.home, ignore_errors=True)
        else:
            self.home_lock.close()  # releases the lock; the migrated database stays for the next run


def server_home() -> tuple[Path, Any]:
    """benchmarks/out/prefect-home, reused from run to run (a migrated database saves about 10 s of
    start-up), locked while a server uses it; when another harness holds it, a throwaway home."""
    import fcntl

    home = OUT_DIR / "prefect-home"
    home.mkdir(parents=True, exist_ok=True)
    lock = open(home / ".bench-lock", "w")  # noqa: SIM115 - held for the server's lifetime
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return home, lock
    except OSError:
        lock.close()
        return fresh_dir(OUT_DIR / f"prefect-home-{os.getpid()}"), None


def start_prefect_server(timeout: float = 120.0) -> PrefectServer:
    from benchmarks.kafka_bench import local_kafka

    port = local_kafka().free_port()
    home, home_lock = server_home()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    began = time.perf_counter()
    server_log = OUT_DIR / f"prefect-server-{os.getpid()}.log"
    log_file = open(server_log, "wb")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("prefect")), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    api_url = f"http://127.0.0.1:{port}/api"
    while time.perf_counter() - began < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"prefect server exited during start-up:\n{log_tail(server_log)}")
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
                if response.status == 200:
                    seconds = time.perf_counter() - began
                    log(f"prefect server ready at {api_url} in {seconds:.1f}s")
                    return PrefectServer(process, api_url, home, round(seconds, 2), home_lock)
        except OSError:
            pass
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)
    raise RuntimeError(f"prefect server not ready after {timeout:.0f}s:\n{log_tail(server_log)}")


def cli_environment(server: PrefectServer | None) -> dict[str, str]:
    """The CLI's environment: no Kafka (no stream), our Prefect server (or a temporary one)."""
    env = dict(os.environ)
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "LOGISTICS_KAFKA_BOOTSTRAP_SERVERS", "LOGISTICS_LAKE", "LOGISTICS_SOURCE_DIR", "PREFECT_API_URL"):
        env.pop(name, None)
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    if server is not None:
        env["PREFECT_API_URL"] = server.api_url
        env["PREFECT_HOME"] = str(server.home)
        # task results of this harness run only: a reused home never hands a run another run's cache
        env["PREFECT_LOCAL_STORAGE_PATH"] = str(OUT_DIR / f"prefect-results-{os.getpid()}")
    else:
        env["PREFECT_HOME"] = str(fresh_dir(OUT_DIR / f"prefect-home-temporary-{os.getpid()}"))
    return env


# --- one run of each -----------------------------------------------------------------------------


def gold_counts(gold_path: Path) -> dict[str, int] | None:
    import duckdb

    if not gold_path.exists():
        return None
    with duckdb.connect(str(gold_path), read_only=True) as con:
        return {t: con.execute(f"select count(*) from main.{t}").fetchone()[0] for t in GOLD_TABLES}


def run_project(source_dir: Path, lake: Path, server: PrefectServer | None, label: str) -> tuple[ProcessRun, dict[str, int] | None]:
    cmd = [str(CLI), "run", "--source-dir", str(source_dir), "--lake", str(lake), "--orders", "0"]
    run = run_measured(cmd, OUT_DIR / f"pipeline-{label}.log", env=cli_environment(server), cwd=OUT_DIR)
    if run.returncode != 0:
        raise RuntimeError(f"logistics-pipeline run failed (exit {run.returncode}, {run.seconds:.1f}s, peak {run.peak_tree_rss_mb} MB); "
                           f"log {run.log_path}:\n{log_tail(run.log_path)}")
    return run, gold_counts(lake / "gold.duckdb")


def run_duckdb_script(source_dir: Path, db: Path, label: str) -> tuple[ProcessRun, dict[str, Any]]:
    db.unlink(missing_ok=True)
    db.with_suffix(".duckdb.wal").unlink(missing_ok=True)
    result = OUT_DIR / f"duckdb-{label}.json"
    cmd = [sys.executable, "-c", _DUCKDB_RUNNER, str(DUCKDB_SCRIPT), str(source_dir), str(db), str(result)]
    run = run_measured(cmd, OUT_DIR / f"duckdb-{label}.log", cwd=OUT_DIR)
    if run.returncode != 0:
        raise RuntimeError(f"duckdb script failed (exit {run.returncode}): {log_tail(run.log_path)}")
    return run, json.loads(result.read_text())


# --- the section ---------------------------------------------------------------------------------


def slopes(lines: list[int], seconds: list[float]) -> list[float | None]:
    """Marginal seconds per million sales lines between consecutive scale factors."""
    return [
        round((seconds[i + 1] - seconds[i]) / (lines[i + 1] - lines[i]) * 1e6, 3) if lines[i + 1] > lines[i] else None
        for i in range(len(lines) - 1)
    ]


def pipeline_section(scales: list[float], server: PrefectServer, first_run_scale: float = 1.0, temporary_server_check: bool = False) -> dict[str, Any]:
    work = fresh_dir(OUT_DIR / "pipeline")
    project_s: list[float | None] = []
    duckdb_s: list[float | None] = []
    lines: list[int] = []
    details: list[dict[str, Any]] = []
    first_run: float | None = None
    noop: float | None = None
    peak: dict[str, Any] = {}
    failures: list[str] = []
    for scale in scales:
        source_dir, rows = dataset(scale)
        lines.append(sales_lines(rows))
        tag = f"s{scale:g}"
        detail: dict[str, Any] = {"scale_factor": scale, "sales_lines": lines[-1]}
        try:
            run, gold = run_project(source_dir, work / f"lake-{tag}", server, tag)
            project_s.append(round(run.seconds, 2))
            detail.update(project_gold_rows=gold, project_peak_tree_rss_mb=run.peak_tree_rss_mb, project_max_rss_mb=run.max_rss_mb,
                          project_cpu_seconds=run.cpu_seconds)
            log(f"pipeline project scale {scale:g}: {run.seconds:.1f}s, peak {run.peak_tree_rss_mb} MB, gold {gold}")
            if scale == scales[-1]:
                peak = {"tree_mb": run.peak_tree_rss_mb, "largest_process_mb": run.max_rss_mb}
                detail["project_peak_during"] = run.peak_during
                detail["project_rss_timeline"] = str(run.log_path.with_suffix(".rss.csv"))
            if scale == first_run_scale:
                first_run = round(run.seconds, 2)
                rerun, _ = run_project(source_dir, work / f"lake-{tag}", server, f"{tag}-noop")
                noop = round(rerun.seconds, 2)
                log(f"pipeline project scale {scale:g} no-op rerun: {rerun.seconds:.1f}s")
        except Exception as error:  # noqa: BLE001 - record where it broke and go on
            project_s.append(None)
            failures.append(f"project at scale {scale:g}: {error}")
            log(f"pipeline project scale {scale:g} FAILED: {error}")
        try:
            run, result = run_duckdb_script(source_dir, work / f"duckdb-{tag}.duckdb", tag)
            duckdb_s.append(round(run.seconds, 2))
            detail.update(duckdb_gold_rows=result["gold_rows"], duckdb_failing_tests=result["failing_tests"], duckdb_peak_tree_rss_mb=run.peak_tree_rss_mb,
                          duckdb_cpu_seconds=run.cpu_seconds)
            log(f"pipeline duckdb script scale {scale:g}: {run.seconds:.1f}s, gold {result['gold_rows']}")
        except Exception as error:  # noqa: BLE001
            duckdb_s.append(None)
            failures.append(f"duckdb script at scale {scale:g}: {error}")
        detail["same_gold_rows"] = detail.get("project_gold_rows") == detail.get("duckdb_gold_rows")
        details.append(detail)
        shutil.rmtree(work / f"lake-{tag}", ignore_errors=True)  # disk
        (work / f"duckdb-{tag}.duckdb").unlink(missing_ok=True)

    temporary: dict[str, Any] = {"measured": False}
    if temporary_server_check:
        source_dir, _ = dataset(first_run_scale)
        try:
            run, _ = run_project(source_dir, work / "lake-temporary-server", None, "temporary-server")
            temporary = {"measured": True, "first_run_seconds": round(run.seconds, 2),
                         "extra_seconds_vs_shared_server": round(run.seconds - first_run, 2) if first_run else None}
        except Exception as error:  # noqa: BLE001
            temporary = {"measured": False, "error": str(error)[:500]}
        finally:
            shutil.rmtree(OUT_DIR / f"prefect-home-temporary-{os.getpid()}", ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)  # lakes and DuckDB files (GBs at scale 100); logs stay in benchmarks/out

    def per_million(seconds: list[float | None]) -> list[float | None]:
        return [round(s / n * 1e6, 2) if s is not None else None for s, n in zip(seconds, lines, strict=True)]

    complete = all(s is not None for s in project_s + duckdb_s)
    project_slopes = slopes(lines, project_s) if complete else None  # type: ignore[arg-type]
    duckdb_slopes = slopes(lines, duckdb_s) if complete else None  # type: ignore[arg-type]
    project_cpu = [d.get("project_cpu_seconds") for d in details]
    duckdb_cpu = [d.get("duckdb_cpu_seconds") for d in details]
    cpu_complete = all(s is not None for s in project_cpu + duckdb_cpu)
    return {
        "pipeline_seconds": {"scale_factors": scales, "project": project_s, "duckdb_script": duckdb_s},
        "first_run_seconds": first_run,
        "noop_rerun_seconds": noop,
        "peak_rss_mb": max(peak.values()) if peak else None,
        "pipeline_detail": {
            "sales_lines": lines,
            "seconds_per_million_lines": {"project": per_million(project_s), "duckdb_script": per_million(duckdb_s)},
            "marginal_seconds_per_million_lines": {"project": project_slopes, "duckdb_script": duckdb_slopes},
            "cpu_seconds": {"project": project_cpu, "duckdb_script": duckdb_cpu,
                            "note": "user+system CPU of the process tree; less sensitive than wall time to other load on a shared machine"},
            "marginal_cpu_seconds_per_million_lines": {"project": slopes(lines, project_cpu) if cpu_complete else None,
                                                        "duckdb_script": slopes(lines, duckdb_cpu) if cpu_complete else None},
            "runs": details,
            "peak_rss": {"scale_factor": scales[-1], **peak, "during": details[-1].get("project_peak_during"),
                         "how": "tree_mb: psutil RSS summed over the CLI process and its children, polled every 0.1 s; "
                                "largest_process_mb: getrusage(RUSAGE_CHILDREN).ru_maxrss of a wrapper process"},
            "first_and_noop_scale_factor": first_run_scale,
            "prefect_server": {"mode": "shared (started once by the harness; PREFECT_API_URL)", "startup_seconds": server.startup_seconds,
                               "temporary_server_check": temporary},
            "failures": failures,
        },
    }


def pipeline_goals(result: dict[str, Any]) -> dict[str, Any]:
    detail = result["pipeline_detail"]
    slopes_ = detail["marginal_seconds_per_million_lines"]
    goals: dict[str, Any] = {}
    if slopes_["project"] and slopes_["duckdb_script"]:
        p, d = slopes_["project"][-1], slopes_["duckdb_script"][-1]
        r = ratio(p, d) if d and d > 0 else None
        goals["pipeline_slope_vs_duckdb"] = {"ratio": r, "goal": "<= 2", "met": r is not None and r <= 2,
                                             "project_s_per_million": p, "duckdb_s_per_million": d}
        cpu = detail.get("marginal_cpu_seconds_per_million_lines", {})
        if cpu.get("project") and cpu.get("duckdb_script") and cpu["duckdb_script"][-1]:
            goals["pipeline_slope_vs_duckdb"]["cpu_ratio"] = ratio(cpu["project"][-1], cpu["duckdb_script"][-1])
        if r is None:
            goals["pipeline_slope_vs_duckdb"]["note"] = "the DuckDB script's time did not grow between the two largest sizes (fixed costs dominate); no ratio"
        ps = slopes_["project"]
        cpu_ps = (detail.get("marginal_cpu_seconds_per_million_lines") or {}).get("project")
        if len(ps) >= 2 and ps[-1] is not None and ps[-2] is not None:
            goals["pipeline_linear"] = {"marginal_s_per_million": ps, "goal": "last slope <= 1.25 x the one before",
                                        "met": ps[-1] <= ps[-2] * 1.25, "marginal_cpu_s_per_million": cpu_ps}
        else:
            goals["pipeline_linear"] = {"marginal_s_per_million": ps, "goal": "last slope <= 1.25 x the one before", "met": None,
                                        "note": "needs three scale factors (the full variant)"}
    else:
        goals["pipeline_slope_vs_duckdb"] = {"ratio": None, "goal": "<= 2", "met": False, "reason": "a pipeline run failed: " + "; ".join(detail["failures"])[:500]}
    first, noop = result["first_run_seconds"], result["noop_rerun_seconds"]
    r = ratio(noop, first)
    goals["noop_rerun_vs_first_run"] = {"ratio": r, "goal": "<= 0.2", "met": r is not None and r <= 0.2}
    peak = result["peak_rss_mb"]
    goals["peak_rss_mb"] = {"value": peak, "goal": "<= 4096 at scale 100", "at_scale_factor": detail["peak_rss"]["scale_factor"],
                            "met": peak is not None and peak <= 4096}
    return goals
