"""A command stopped by SIGTERM (what a scheduler sends) or SIGINT (Ctrl-C) ends with one
`error:` line as its last, exit 143 or 130, and leaves no process behind: the temporary
Prefect server it started (about 260 MB) used to live on, orphaned. And a library's error
reaches the terminal with the table it concerns first. A command that ends skips Python's
teardown of its modules, but nothing an exit owes: threads, exit handlers, output."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from deltalake import DeltaTable

from logistics_pipeline.tasks.local.lake import data_file_path
from tests.cli_runner import CLI, ROOT, run_cli


def start(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def read_until(process: subprocess.Popen, text: str) -> list[str]:
    """stderr's lines up to the first holding ``text``."""
    lines = []
    for line in process.stderr:
        lines.append(line)
        if text in line:
            return lines
    pytest.fail(f"the command ended before {text!r}:\n{''.join(lines)}")


def temporary_server_environment(home: Path) -> dict[str, str]:
    """This environment with no PREFECT_API_URL (a temporary server, as a new user gets) and ``home`` as PREFECT_HOME."""
    return {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {"PREFECT_HOME": str(home)}


@pytest.fixture(scope="session")
def migrated_database(tmp_path_factory) -> Path:
    """A Prefect database with every migration run (12 s), made once for the session."""
    home = tmp_path_factory.mktemp("prefect-home")
    upgrade = [Path(sys.executable).with_name("prefect"), "server", "database", "upgrade", "-y"]
    subprocess.run(upgrade, env=temporary_server_environment(home), check=True, capture_output=True, timeout=300)
    return home / "prefect.db"


@pytest.fixture
def without_server(tmp_path, migrated_database) -> dict[str, str]:
    """The environment of a command that starts a temporary server, as a new user's does, in a
    Prefect home of its own: two temporary servers on one database (~/.prefect's, say, from two
    tests at once) contend for its writes, and the loser logs a traceback for a block type it
    could not register (seen once in CI)."""
    home = tmp_path / "prefect-home"
    home.mkdir()
    shutil.copyfile(migrated_database, home / "prefect.db")
    return temporary_server_environment(home)


def servers_on(port: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        command = " ".join(process.info["cmdline"] or [])
        if "prefect.server.api.server:create_app" in command and f"--port {port}" in command:
            found.append(process)
    return found


@pytest.mark.timeout(600)
def test_sigterm_stops_the_run_and_its_temporary_server(tmp_path, sources, without_server):
    process = start("run", "--source-dir", str(sources), "--lake", str(tmp_path / "lake"), env=without_server)
    lines = read_until(process, "Beginning subflow run")
    port = re.search(r"Starting temporary server on http://127\.0\.0\.1:(\d+)", "".join(lines)).group(1)
    family = psutil.Process(process.pid).children(recursive=True)
    assert servers_on(port) and all(server in family for server in servers_on(port)), "the temporary server is the command's child"

    process.send_signal(signal.SIGTERM)
    _, rest = process.communicate(timeout=180)
    lines += rest.splitlines(keepends=True)
    assert process.returncode == 143, "".join(lines)
    assert lines[-1].strip() == "error: stopped by SIGTERM", "".join(lines[-5:])
    assert "Traceback" not in "".join(lines)
    _, alive = psutil.wait_procs(family, timeout=10)
    assert not alive and not servers_on(port), f"left behind: {alive or servers_on(port)}"


@pytest.mark.timeout(600)
def test_sigint_stops_a_run_with_one_line(tmp_path, sources, prefect_server):
    from prefect.settings import PREFECT_API_URL

    process = start("run", "--source-dir", str(sources), "--lake", str(tmp_path / "lake"), env=os.environ | {"PREFECT_API_URL": PREFECT_API_URL.value()})
    lines = read_until(process, "for flow 'silver-layer'")
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=180)
    lines += rest.splitlines(keepends=True)
    assert process.returncode == 130, "".join(lines)
    assert lines[-1].strip() == "error: stopped by SIGINT", "".join(lines[-5:])
    assert "Traceback" not in "".join(lines)
    assert not (tmp_path / "lake" / "gold.duckdb").exists()


def test_a_library_error_names_its_table(tmp_path, sources, prefect_server):
    lake = tmp_path / "lake"
    assert run_cli("bronze", "--source-dir", str(sources), "--lake", str(lake)).returncode == 0
    bronze = lake / "bronze" / "crm_sales_details"
    (data_file,) = [Path(data_file_path(uri)) for uri in DeltaTable(str(bronze)).file_uris()]
    data_file.write_bytes(data_file.read_bytes()[: data_file.stat().st_size // 2])  # a write cut short (a full disk, say)

    result = run_cli("silver", "--lake", str(lake))
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: silver crm_sales_details: "), last
    assert "Traceback" not in result.stderr


@pytest.mark.timeout(600)
def test_a_command_that_succeeds_stops_its_temporary_server_cleanly(tmp_path, without_server):
    """Its workers drained first, the server stops before the result: no CancelledError
    tracebacks after it, nothing left running."""
    result = subprocess.run([*CLI, "maintain", "--lake", str(tmp_path / "lake")], capture_output=True, text=True, env=without_server, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    port = re.search(r"Starting temporary server on http://127\.0\.0\.1:(\d+)", result.stderr).group(1)
    assert result.stderr.strip().splitlines()[-1].endswith(f"Stopping temporary server on http://127.0.0.1:{port}"), result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "CancelledError" not in result.stderr
    assert not servers_on(port)


EXIT = """
import atexit, sys, threading, time
from pathlib import Path
from logistics_pipeline.flows.cli import _exit
out = Path(sys.argv[1])
atexit.register(lambda: (out / "exit handler").write_text("ran"))
threading.Thread(target=lambda: (time.sleep(0.5), (out / "thread").write_text("joined"))).start()
sys.stdout.write("the last output, with no newline")
_exit(3)
"""


def test_the_command_exit_joins_threads_runs_exit_handlers_and_flushes_output(tmp_path):
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # so that a missed flush loses the output
    result = subprocess.run([sys.executable, "-c", EXIT, str(tmp_path)], capture_output=True, text=True, env=buffered, cwd=ROOT, timeout=120)
    assert result.returncode == 3, result.stderr
    assert result.stdout == "the last output, with no newline"
    assert (tmp_path / "thread").read_text() == "joined"
    assert (tmp_path / "exit handler").read_text() == "ran"
