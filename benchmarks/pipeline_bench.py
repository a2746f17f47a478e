"""pipeline_seconds, pipeline_cpu_seconds, peak_rss_mb, first_run_seconds, noop_rerun_seconds.

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
    run_measured,
    sales_lines,
)
from benchmarks.floors import floors as floors_of
from logistics_pipeline.tasks.orchestration.server import SQLITE_SERVER_SETTINGS

DUCKDB_SCRIPT = BENCH_DIR / "duckdb_pipeline.sql"
GOLD_TABLES = ("dim_customers", "dim_products", "fact_orders")
# The project's dimensions hold one unknown member each (key '-1', where order lines of a
# customer or product that is not (or no longer) exported point); the script has none.
UNKNOWN_MEMBER_KEYS = {"dim_customers": "customer_key", "dim_products": "product_key"}
CLI = Path(sys.executable).with_name("logistics-pipeline")
FLOORS_SCALE = 1.0  # where benchmarks.floors measures what dbt and Prefect cost alone

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
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **SQLITE_SERVER_SETTINGS}
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
    env["XDG_CACHE_HOME"] = str(parse_cache_home())
    if server is not None:
        env["PREFECT_API_URL"] = server.api_url
        env["PREFECT_HOME"] = str(server.home)
        # task results of this harness run only: a reused home never hands a run another run's cache
        env["PREFECT_LOCAL_STORAGE_PATH"] = str(OUT_DIR / f"prefect-results-{os.getpid()}")
    else:
        env["PREFECT_HOME"] = str(fresh_dir(OUT_DIR / f"prefect-home-temporary-{os.getpid()}"))
    return env


def parse_cache_home() -> Path:
    """The CLI runs' ``XDG_CACHE_HOME``: their saved dbt parse (tasks/gold/parsed_project.py) is
    this harness's own, made by ``warm_parse_cache``, not whatever an earlier command left."""
    return OUT_DIR / f"cache-{os.getpid()}"


WARM_PARSE = (
    "from logistics_pipeline.tasks.gold.dbt import dbt_vars, project_manifest; "
    "from logistics_pipeline.tasks.settings import Settings; "
    "settings = Settings(); assert project_manifest(settings, dbt_vars(settings)) is not None"
)


def warm_parse_cache(server: PrefectServer | None) -> float:
    """Parse the gold project once into the runs' new, empty cache, as the first gold build after
    an install or a change of the dbt project does; returns its seconds (a process of its own,
    dbt's import included). Every run then builds gold on that parse, as a user's runs do."""
    shutil.rmtree(parse_cache_home(), ignore_errors=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", WARM_PARSE], env=cli_environment(server), check=True, capture_output=True)
    return round(time.perf_counter() - started, 2)


# --- one run of each -----------------------------------------------------------------------------


def gold_counts(gold_path: Path) -> dict[str, int] | None:
    import duckdb

    if not gold_path.exists():
        return None
    with duckdb.connect(str(gold_path), read_only=True) as con:
        counts = {t: con.execute(f"select count(*) from main.{t}").fetchone()[0] for t in GOLD_TABLES}
        unknown = {t: con.execute(f"select count(*) from main.{t} where {key} = '-1'").fetchone()[0] for t, key in UNKNOWN_MEMBER_KEYS.items()}
    return {**counts, **{f"{t}_unknown_members": n for t, n in unknown.items()}}


def known_rows(project_gold: dict[str, int] | None) -> dict[str, int] | None:
    """The project's gold row counts less its unknown members: what the script's counts must equal."""
    if project_gold is None:
        return None
    return {t: project_gold[t] - project_gold.get(f"{t}_unknown_members", 0) for t in GOLD_TABLES}


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


def measured_floors(lake: Path, server: PrefectServer) -> dict[str, Any]:
    """What dbt and Prefect cost alone (``benchmarks.floors``), on the scale-1 lake just built."""
    try:
        return {"measured": True, **floors_of(lake, cli_environment(server))}
    except Exception as error:  # noqa: BLE001 - a detail: record why it is missing and go on
        log(f"floors FAILED: {error}")
        return {"measured": False, "reason": str(error)[:500]}


# --- the section ---------------------------------------------------------------------------------


def slopes(lines: list[int], seconds: list[float]) -> list[float | None]:
    """Marginal seconds per million sales lines between consecutive scale factors."""
    return [
        round((seconds[i + 1] - seconds[i]) / (lines[i + 1] - lines[i]) * 1e6, 3) if lines[i + 1] > lines[i] else None
        for i in range(len(lines) - 1)
    ]


def pipeline_section(scales: list[float], server: PrefectServer, noop_scales: list[float], temporary_server_check: bool = False) -> dict[str, Any]:
    """Both sides at every scale (wall, CPU, peak tree RSS), plus a no-op rerun at each of
    ``noop_scales`` that is also in ``scales``."""
    work = fresh_dir(OUT_DIR / f"pipeline-{os.getpid()}")  # per harness: two harnesses never share a lake
    project_s: list[float | None] = []
    duckdb_s: list[float | None] = []
    project_cpu: list[float | None] = []
    duckdb_cpu: list[float | None] = []
    project_mb: list[float | None] = []
    duckdb_mb: list[float | None] = []
    lines: list[int] = []
    details: list[dict[str, Any]] = []
    rerun_scales = [s for s in scales if s in noop_scales]
    first_runs: dict[float, float | None] = dict.fromkeys(rerun_scales)
    noop_runs: dict[float, float | None] = dict.fromkeys(rerun_scales)
    failures: list[str] = []
    floors: dict[str, Any] = {"measured": False, "reason": f"this run has no pipeline run at scale {FLOORS_SCALE:g}"}
    parse_seconds = warm_parse_cache(server)
    log(f"pipeline: parsed the gold project once for every run in {parse_seconds:.1f}s")
    for scale in scales:
        source_dir, rows = dataset(scale)
        lines.append(sales_lines(rows))
        tag = f"s{scale:g}"
        detail: dict[str, Any] = {"scale_factor": scale, "sales_lines": lines[-1]}
        project_run: ProcessRun | None = None
        try:
            project_run, gold = run_project(source_dir, work / f"lake-{tag}", server, tag)
            detail.update(project_gold_rows=gold, project_peak_tree_rss_mb=project_run.peak_tree_rss_mb, project_max_rss_mb=project_run.max_rss_mb,
                          project_peak_during=project_run.peak_during, project_rss_timeline=str(project_run.log_path.with_suffix(".rss.csv")))
            log(f"pipeline project scale {scale:g}: {project_run.seconds:.1f}s, {project_run.cpu_seconds:.1f} CPU-s, peak {project_run.peak_rss_mb} MB, gold {gold}")
            if scale in first_runs:
                first_runs[scale] = round(project_run.seconds, 2)
                rerun, _ = run_project(source_dir, work / f"lake-{tag}", server, f"{tag}-noop")
                noop_runs[scale] = round(rerun.seconds, 2)
                detail.update(project_noop_rerun_seconds=noop_runs[scale], project_noop_rerun_cpu_seconds=rerun.cpu_seconds)
                log(f"pipeline project scale {scale:g} no-op rerun: {rerun.seconds:.1f}s, {rerun.cpu_seconds:.1f} CPU-s")
            if scale == FLOORS_SCALE:
                floors = measured_floors(work / f"lake-{tag}", server)
        except Exception as error:  # noqa: BLE001 - record where it broke and go on
            failures.append(f"project at scale {scale:g}: {error}")
            log(f"pipeline project scale {scale:g} FAILED: {error}")
        shutil.rmtree(work / f"lake-{tag}", ignore_errors=True)  # disk, and the page cache the DuckDB side would compete with
        project_s.append(round(project_run.seconds, 2) if project_run else None)
        project_cpu.append(project_run.cpu_seconds if project_run else None)
        project_mb.append(project_run.peak_rss_mb if project_run else None)
        duckdb_run: ProcessRun | None = None
        try:
            duckdb_run, result = run_duckdb_script(source_dir, work / f"duckdb-{tag}.duckdb", tag)
            detail.update(duckdb_gold_rows=result["gold_rows"], duckdb_failing_tests=result["failing_tests"],
                          duckdb_peak_tree_rss_mb=duckdb_run.peak_tree_rss_mb, duckdb_max_rss_mb=duckdb_run.max_rss_mb)
            log(f"pipeline duckdb script scale {scale:g}: {duckdb_run.seconds:.1f}s, {duckdb_run.cpu_seconds:.1f} CPU-s, "
                f"peak {duckdb_run.peak_rss_mb} MB, gold {result['gold_rows']}")
        except Exception as error:  # noqa: BLE001
            failures.append(f"duckdb script at scale {scale:g}: {error}")
            log(f"pipeline duckdb script scale {scale:g} FAILED: {error}")
        (work / f"duckdb-{tag}.duckdb").unlink(missing_ok=True)
        duckdb_s.append(round(duckdb_run.seconds, 2) if duckdb_run else None)
        duckdb_cpu.append(duckdb_run.cpu_seconds if duckdb_run else None)
        duckdb_mb.append(duckdb_run.peak_rss_mb if duckdb_run else None)
        known = known_rows(detail.get("project_gold_rows"))
        detail["same_gold_rows"] = known is not None and known == detail.get("duckdb_gold_rows")
        if known is not None and "duckdb_gold_rows" in detail and not detail["same_gold_rows"]:
            log(f"pipeline scale {scale:g}: GOLD ROWS DIFFER: project less unknown members {known}, script {detail.get('duckdb_gold_rows')}")
        details.append(detail)

    temporary: dict[str, Any] = {"measured": False}
    if temporary_server_check:
        source_dir, _ = dataset(1.0)
        try:
            run, _ = run_project(source_dir, work / "lake-temporary-server", None, "temporary-server")
            at_1 = project_s[scales.index(1.0)] if 1.0 in scales else None
            temporary = {"measured": True, "scale_factor": 1.0, "first_run_seconds": round(run.seconds, 2),
                         "extra_seconds_vs_shared_server": round(run.seconds - at_1, 2) if at_1 else None}
        except Exception as error:  # noqa: BLE001
            temporary = {"measured": False, "error": str(error)[:500]}
        finally:
            shutil.rmtree(OUT_DIR / f"prefect-home-temporary-{os.getpid()}", ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)  # lakes and DuckDB files (GBs at scale 300); logs stay in benchmarks/out
    shutil.rmtree(parse_cache_home(), ignore_errors=True)

    def per_million(seconds: list[float | None]) -> list[float | None]:
        return [round(s / n * 1e6, 2) if s is not None else None for s, n in zip(seconds, lines, strict=True)]

    complete = all(s is not None for s in project_s + duckdb_s)
    cpu_complete = all(s is not None for s in project_cpu + duckdb_cpu)
    return {
        "pipeline_seconds": {"scale_factors": scales, "project": project_s, "duckdb_script": duckdb_s},
        "pipeline_cpu_seconds": {"scale_factors": scales, "project": project_cpu, "duckdb_script": duckdb_cpu},
        "peak_rss_mb": {"scale_factors": scales, "project": project_mb, "duckdb_script": duckdb_mb},
        "first_run_seconds": {"scale_factors": rerun_scales, "project": [first_runs[s] for s in rerun_scales]},
        "noop_rerun_seconds": {"scale_factors": rerun_scales, "project": [noop_runs[s] for s in rerun_scales]},
        "pipeline_detail": {
            "sales_lines": lines,
            "seconds_per_million_lines": {"project": per_million(project_s), "duckdb_script": per_million(duckdb_s)},
            "marginal_seconds_per_million_lines": {"project": slopes(lines, project_s) if complete else None,  # type: ignore[arg-type]
                                                   "duckdb_script": slopes(lines, duckdb_s) if complete else None},  # type: ignore[arg-type]
            "marginal_cpu_seconds_per_million_lines": {"project": slopes(lines, project_cpu) if cpu_complete else None,  # type: ignore[arg-type]
                                                       "duckdb_script": slopes(lines, duckdb_cpu) if cpu_complete else None},  # type: ignore[arg-type]
            "runs": details,
            "dbt_parse_seconds": parse_seconds,
            "floors": floors,
            "peak_rss_how": "per run, the larger of: psutil RSS summed over the command and all its descendants, polled every 0.1 s "
                            "(*_peak_tree_rss_mb), and getrusage(RUSAGE_CHILDREN).ru_maxrss, the largest single process (*_max_rss_mb); "
                            "the measuring wrapper and the harness's Prefect server are not in the tree",
            "prefect_server": {"mode": "shared (started once by the harness; PREFECT_API_URL)", "startup_seconds": server.startup_seconds,
                               "temporary_server_check": temporary},
            "failures": failures,
        },
    }
