"""Mistakes in what a command is given cost well under a second and one line: they are found
before any Prefect server starts (no PREFECT_API_URL here: a temporary server would take
10 s or more and say so), exit 2 like every usage error, and show no traceback. And the
command line's own conveniences: --version, -h, help that fits the terminal."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.cli_runner import CLI, ROOT

FAST_S = 5.0
"""A generous bound (measured: 0.2-0.6 s on a busy 2-core machine); a temporary server takes 10 s or more."""


def run_without_server(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, float]:
    environment = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | (env or {})
    started = time.monotonic()
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, env=environment, cwd=ROOT, timeout=120)
    return result, time.monotonic() - started


@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "lake.txt"
    path.write_text("not a lake")
    return path


MISTAKES = {
    "missing-source-folder": (["run", "--source-dir", "/nonexistent"], {}, "error: source folder /nonexistent does not exist"),
    "lake-is-a-file": (["run", "--lake", "{file}"], {}, "error: lake {file} is a file, not a folder"),
    "lake-under-a-file": (["silver", "--lake", "{file}/lake"], {}, "error: lake {file}/lake cannot be created: {file} is a file"),
    "lake-delta-rs-cannot-open": (["bronze", "--lake", "{tmp}/a^b"], {}, "error: lake {tmp}/a^b: delta-rs cannot open a table under a path holding '^'"),
    "source-folder-is-a-file": (["bronze", "--source-dir", "{file}"], {}, "error: source folder {file} is a file, not a folder"),
    "engine-option": (["run", "--engine", "spark"], {}, "error: Invalid value for '--engine': 'spark' is not one of 'local', 'databricks'."),
    "engine-setting": (["run"], {"LOGISTICS_ENGINE": "spark"}, "error: invalid setting LOGISTICS_ENGINE: Input should be 'local' or 'databricks' (got 'spark')"),
    "dbt-target": (["gold", "--dbt-target", "prod"], {}, "error: dbt target 'prod' is not in "),
    "unknown-option": (["run", "--bogus"], {}, "error: No such option: --bogus (see 'logistics-pipeline run --help')"),
    "negative-orders": (["run", "--orders", "-1"], {}, "error: Invalid value for '--orders': Input should be greater than or equal to 0"),
}


@pytest.mark.parametrize(("args", "env", "line"), MISTAKES.values(), ids=MISTAKES.keys())
def test_a_mistake_is_one_line_and_exit_2_before_any_server(tmp_path, a_file, args, env, line):
    def fill(text: str) -> str:
        return text.format(file=a_file, tmp=tmp_path)

    result, seconds = run_without_server(*map(fill, args), env=env)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(fill(line)), result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert seconds < FAST_S, f"{seconds:.1f}s: did a Prefect server start?"


def test_version_and_short_help():
    version, _ = run_without_server("--version")
    assert version.returncode == 0 and version.stdout.startswith("logistics-pipeline ")
    short, _ = run_without_server("run", "-h")
    assert short.returncode == 0 and "--source-dir" in short.stdout
    bare, _ = run_without_server()
    assert bare.returncode == 0 and "Commands:" in bare.stdout


@pytest.mark.parametrize("columns", [60, 100, 200])
def test_help_fits_the_terminal_and_is_never_cut(columns):
    result, _ = run_without_server("run", "--help", env={"COLUMNS": str(columns)})
    text = result.stdout
    assert "…" not in text and "..." not in text
    assert "(default:$KAFKA_BOOTSTRAP_SERVERS;unsetmeansthelocallandingfolder)." in "".join(text.split()), "help text was lost"
    assert max(len(line) for line in text.splitlines()) <= columns
    overview, _ = run_without_server("--help", env={"COLUMNS": str(columns)})
    assert "..." not in overview.stdout.replace("COMMAND [ARGS]...", "")
    assert "Runthewholepipeline:produceorders(with--orders),bronze,silver,thengold(dbt)." in "".join(overview.stdout.split())

