"""Reliability tests: kill the CLI anywhere, bounce the broker, run twice at once, maintain
tables under load, hunt for leaked secrets, bound memory.

Helpers shared by those tests: the real CLI as a subprocess against the session's Prefect
server, with its log lines watched so that a kill lands inside a chosen layer.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VOLATILE = ("_ingested_at",)
"""Columns that legitimately differ between an interrupted-and-rerun lake and a clean one:
when a row was loaded. Everything else (CSV batch ids are content hashes, landing batch ids
are file + first line) must be equal."""
KAFKA_VOLATILE = ("_ingested_at", "_batch_id")
"""Kafka batch ids hold the wall-clock time of the batch, and a resumed run cuts batches elsewhere."""


def cli_env(lake: Path | str | None = None, source_dir: Path | str | None = None, **extra: str) -> dict[str, str]:
    """The environment for a CLI subprocess: the session's Prefect server, no ambient Kafka."""
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOGISTICS_", "KAFKA_", "DATABRICKS_"))}
    env.update(
        PREFECT_API_URL=str(PREFECT_API_URL.value()),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PYTHONUNBUFFERED="1",
        PYTHONWARNINGS="ignore",
    )
    if lake is not None:
        env["LOGISTICS_LAKE"] = str(lake)
    if source_dir is not None:
        env["LOGISTICS_SOURCE_DIR"] = str(source_dir)
    env.update({k: str(v) for k, v in extra.items()})
    return env


@dataclass
class CliProcess:
    """A running ``python -m logistics_pipeline.flows.cli ...`` whose merged stdout/stderr is read line by line."""

    args: list[str]
    process: subprocess.Popen
    lines: list[tuple[float, str]] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    @classmethod
    def start(cls, args: Iterable[str], env: dict[str, str], preexec_fn=None) -> "CliProcess":
        args = [str(a) for a in args]
        process = subprocess.Popen(
            [sys.executable, "-m", "logistics_pipeline.flows.cli", *args],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, errors="replace", preexec_fn=preexec_fn,
        )
        cli = cls(args, process)
        threading.Thread(target=cli._read, daemon=True).start()
        return cli

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join(line for _, line in self.lines)

    def wait_for(self, pattern: str, timeout: float = 180.0) -> float | None:
        """Block until a line matches ``pattern``; the time it was read, or None if the process ended first."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for stamp, line in self.lines[seen:]:
                    if regex.search(line):
                        return stamp
                seen = len(self.lines)
                if self.process.poll() is not None and self._drained():
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no line matching {pattern!r} within {timeout:g}s:\n{self.tail()}")
                self._changed.wait(min(remaining, 0.2))

    def _drained(self) -> bool:
        return self.process.stdout is None or self.process.stdout.closed or self.process.poll() is not None

    def kill(self) -> int:
        """SIGKILL (no cleanup of any kind) and reap; returns the exit code (-9 when it was still running)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        return self.process.wait(timeout=60)

    def finish(self, timeout: float = 600.0) -> int:
        code = self.process.wait(timeout=timeout)
        time.sleep(0.05)  # let the reader thread take the last lines
        return code

    def tail(self, lines: int = 40) -> str:
        with self._changed:
            return "\n".join(line for _, line in self.lines[-lines:])


def run_cli(args: Iterable[str], env: dict[str, str], timeout: float = 600.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "logistics_pipeline.flows.cli", *[str(a) for a in args]],
        cwd=ROOT, env=env, capture_output=True, text=True, errors="replace", timeout=timeout,
    )


def restore(stage: Path, lake: Path) -> None:
    """Make ``lake`` an exact copy of a saved stage (same path every time, so dbt's partial parse stays valid)."""
    if lake.exists():
        shutil.rmtree(lake)
    shutil.copytree(stage, lake, symlinks=True)


def save(lake: Path, stage: Path) -> Path:
    if stage.exists():
        shutil.rmtree(stage)
    shutil.copytree(lake, stage, symlinks=True, ignore=shutil.ignore_patterns("_lock"))
    return stage


def diff_summary(expected: dict[str, list[tuple]], actual: dict[str, list[tuple]]) -> str:
    """Which tables differ and how, in a few lines (for assertion messages)."""
    out = []
    for name in sorted(set(expected) | set(actual)):
        e, a = expected.get(name), actual.get(name)
        if e == a:
            continue
        if e is None or a is None:
            out.append(f"{name}: {'missing' if a is None else 'unexpected'}")
            continue
        missing = len(set(e) - set(a))
        extra = len(set(a) - set(e))
        out.append(f"{name}: {len(e)} rows expected, {len(a)} found ({missing} missing, {extra} unexpected)")
    return "; ".join(out) or "equal"
