"""What every benchmark section shares: paths, datasets, timing, process memory, versions."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
OUT_DIR = BENCH_DIR / "out"
DATA_DIR = OUT_DIR / "data"
SEED = 42


class NotAvailable(RuntimeError):
    """A section cannot run (yet): the harness records its keys as null with this reason."""


def log(message: str) -> None:
    """Progress goes to stderr, so that the JSON is the only thing on stdout's last line."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- datasets --------------------------------------------------------------------------------


def scale_tag(scale: float) -> str:
    return f"s{scale:g}".replace(".", "_")


def dataset(scale: float, seed: int = SEED) -> tuple[Path, dict[str, int]]:
    """CSV exports at ``scale`` (generated once per version of the generator, then reused);
    returns the folder and rows per file."""
    import hashlib

    generator = hashlib.sha256((PROJECT_ROOT / "datasets" / "generate.py").read_bytes()).hexdigest()[:8]
    folder = DATA_DIR / f"{scale_tag(scale)}-seed{seed}-gen{generator}"
    for stale in DATA_DIR.glob(f"{scale_tag(scale)}-seed{seed}*"):
        if stale != folder:
            shutil.rmtree(stale, ignore_errors=True)
    marker = folder / "ROWS.json"
    if marker.exists():
        return folder, json.loads(marker.read_text())
    from logistics_pipeline.datasets.generate import generate_datasets

    shutil.rmtree(folder, ignore_errors=True)
    began = time.perf_counter()
    rows = generate_datasets(folder, scale=scale, seed=seed)
    marker.write_text(json.dumps(rows))
    log(f"generated scale {scale:g} datasets in {time.perf_counter() - began:.1f}s ({rows['source_crm/sales_details.csv']} sales lines)")
    return folder, rows


def sales_lines(rows: dict[str, int]) -> int:
    return rows["source_crm/sales_details.csv"]


def fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def compile_project() -> None:
    """The project's modules as bytecode, as `make install` and the worker image leave them (pip
    compiles installed packages; an editable install leaves the project as source). Without it, a
    shell with PYTHONDONTWRITEBYTECODE set has every measured CLI run compile them again."""
    import compileall

    for package in ("flows", "tasks", "datasets"):
        compileall.compile_dir(PROJECT_ROOT / package, quiet=1)


# --- timing and memory -----------------------------------------------------------------------


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    began = time.perf_counter()
    result = action()
    return time.perf_counter() - began, result


@dataclass
class TreeMemory:
    """Polls the summed RSS of a process and all its descendants; keeps the peak.

    With ``include_root=False`` only the descendants count: the measuring wrapper of
    run_measured is left out, so the sum is the measured command's own tree."""

    pid: int
    interval_s: float = 0.1
    include_root: bool = True
    peak_bytes: int = 0
    peak_at: float = 0.0  # wall-clock time (time.time()) of the peak
    timeline: list[tuple[float, int]] = field(default_factory=list)  # (time.time(), bytes) about once a second
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> TreeMemory:
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _poll(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            total = 0
            try:
                processes = [root, *root.children(recursive=True)] if self.include_root else root.children(recursive=True)
            except psutil.NoSuchProcess:
                return
            for process in processes:
                try:
                    total += process.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            now = time.time()
            if total > self.peak_bytes:
                self.peak_bytes, self.peak_at = total, now
            if not self.timeline or now - self.timeline[-1][0] >= 1.0:
                self.timeline.append((now, total))
            self._stop.wait(self.interval_s)


# A tiny parent that runs a command, waits for it and reports the largest max-RSS among the
# command and its descendants (getrusage(RUSAGE_CHILDREN)), without counting anything else
# the harness itself has started (Prefect server, Kafka broker, earlier runs).
_RUSAGE_WRAPPER = """
import json, resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as out:
    json.dump({"returncode": code, "maxrss_kb": usage.ru_maxrss, "user_s": usage.ru_utime, "system_s": usage.ru_stime}, out)
sys.exit(code)
"""


@dataclass
class ProcessRun:
    seconds: float
    returncode: int
    peak_tree_rss_mb: float  # psutil polling every 0.1 s, summed over the command and its descendants
    max_rss_mb: float  # getrusage: the largest single process in the tree, exact however short its peak
    cpu_seconds: float
    log_path: Path
    peak_during: str | None = None  # the last log line before the memory peak

    @property
    def peak_rss_mb(self) -> float:
        """The tree's peak: the polled sum, or the largest single process when polling missed a short spike."""
        return max(self.peak_tree_rss_mb, self.max_rss_mb)


def run_measured(cmd: list[str], log_path: Path, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float | None = None) -> ProcessRun:
    """Run ``cmd`` to completion with its output in ``log_path``; wall time, peak memory, CPU."""
    usage_path = log_path.with_suffix(".rusage.json")
    usage_path.unlink(missing_ok=True)
    wrapped = [sys.executable, "-c", _RUSAGE_WRAPPER, str(usage_path), *cmd]
    with open(log_path, "wb") as out:
        began = time.perf_counter()
        process = subprocess.Popen(wrapped, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        with TreeMemory(process.pid, include_root=False) as memory:
            try:
                returncode = process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise
        seconds = time.perf_counter() - began
    usage = json.loads(usage_path.read_text()) if usage_path.exists() else {"maxrss_kb": 0, "user_s": 0.0, "system_s": 0.0}
    with open(log_path.with_suffix(".rss.csv"), "w") as timeline:
        timeline.write("unix_time,rss_mb\n")
        timeline.writelines(f"{t:.1f},{b / 2**20:.1f}\n" for t, b in memory.timeline)
    return ProcessRun(
        seconds=seconds,
        returncode=returncode,
        peak_tree_rss_mb=round(memory.peak_bytes / 2**20, 1),
        max_rss_mb=round(usage["maxrss_kb"] / 1024, 1),
        cpu_seconds=round(usage["user_s"] + usage["system_s"], 2),
        log_path=log_path,
        peak_during=last_log_line_before(log_path, memory.peak_at) if memory.peak_at else None,
    )


def last_log_line_before(log_path: Path, when: float) -> str | None:
    """The last Prefect log line (HH:MM:SS.mmm | LEVEL | ...) stamped before ``when``."""
    import re
    from datetime import datetime

    day = datetime.fromtimestamp(when)
    found = None
    try:
        for line in log_path.read_text(errors="replace").splitlines():
            match = re.match(r"(\d\d):(\d\d):(\d\d)\.(\d{3}) \|", line)
            if not match:
                continue
            h, m, sec, ms = map(int, match.groups())
            stamp = day.replace(hour=h, minute=m, second=sec, microsecond=ms * 1000).timestamp()
            if stamp <= when:
                found = line.strip()[:300]
    except FileNotFoundError:
        return None
    return found


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


# --- the machine and the software ------------------------------------------------------------


def machine() -> dict[str, Any]:
    import psutil

    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "memory_mb": round(psutil.virtual_memory().total / 2**20),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
        info["cpu"] = names[0] if names else platform.processor()
    except OSError:
        info["cpu"] = platform.processor()
    return info


def versions(extra: dict[str, str] | None = None) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in ("polars", "narwhals", "duckdb", "deltalake", "pyarrow", "pandas", "numpy", "prefect", "dbt-core", "dbt-duckdb", "confluent-kafka"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    try:
        java = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30)
        found["java"] = (java.stderr or java.stdout).splitlines()[0] if (java.stderr or java.stdout) else None
    except (OSError, subprocess.TimeoutExpired):
        found["java"] = None
    found.update(extra or {})
    return found


def rate(count: float, seconds: float | None) -> float | None:
    return None if not seconds else round(count / seconds, 1)


def ratio(numerator: float | None, denominator: float | None, digits: int = 3) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, digits)
