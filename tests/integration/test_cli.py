"""The console script as a person uses it: exit codes, one-line errors, nothing half-written."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from tests.cli_runner import run_cli
from tests.oracle import GOLD_QUERIES, expected_gold

pytestmark = pytest.mark.usefixtures("prefect_server")



def test_help_explains_the_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("run", "bronze", "silver", "gold", "generate-datasets"):
        assert command in result.stdout
    run_help = run_cli("run", "--help").stdout
    for option in ("--source-dir", "--lake", "--orders"):
        assert option in run_help


def test_run_under_odd_folder_names_builds_the_right_gold_and_reads_well(tmp_path, sources):
    """A lake and an export under names with a space, '#', '?', '%' and a non-ASCII letter (which
    delta-rs percent-encodes), with streamed orders: gold is what the sources say; the log has
    dbt's lines once each, under their task's name, no colour codes; the summary says what it counts."""
    odd = tmp_path / "odd #?%é"
    export, lake = odd / "export #1", odd / "lake ?%é"
    odd.mkdir()
    sources.rename(export)
    result = run_cli("run", "--source-dir", str(export), "--lake", str(lake), "--orders", "20", "--seed", "5")
    assert result.returncode == 0, result.stderr
    assert str(lake / "gold.duckdb") in result.stdout

    messages = [line for path in sorted((lake / "landing" / "orders").glob("*.jsonl")) for line in path.read_text().splitlines()]
    assert len(messages) == 20
    expected = expected_gold(export, messages)
    with duckdb.connect(str(lake / "gold.duckdb"), read_only=True) as connection:
        for table, query in GOLD_QUERIES.items():
            assert set(connection.execute(query).fetchall()) == getattr(expected, table), table

    log = result.stderr
    assert "Task run None" not in log and "\x1b[" not in log
    created = [line for line in log.splitlines() if "OK created sql table model main.fact_orders" in line]
    assert len(created) == 1 and "Task run 'model fact_orders' - " in created[0], created
    assert "Traceback" not in log and "CancelledError" not in log
    assert "(20 of them stream messages)" in log, "the summary says what bronze counts"
    assert "bronze: " in result.stdout and ", 20 stream messages)" in result.stdout
    assert "stream order lines)" in result.stdout


def header_renamed(path: Path) -> None:
    lines = path.read_bytes().split(b"\r\n")
    lines[0] = lines[0].replace(b"cst_gndr", b"gender")
    path.write_bytes(b"\r\n".join(lines))


def column_dropped(path: Path) -> None:
    rows = [line.split(b",")[:-1] for line in path.read_bytes().split(b"\r\n") if line]
    path.write_bytes(b"\r\n".join(b",".join(row) for row in rows) + b"\r\n")


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (column_dropped, "header does not match the expected columns: missing cst_create_date"),
        (header_renamed, "header does not match the expected columns: missing cst_gndr"),
        (lambda path: path.write_bytes(b""), "file is empty"),
        (lambda path: path.write_bytes(bytes(range(256)) * 64), "not a text file"),
        (lambda path: path.unlink(), "file not found"),
    ],
    ids=["missing-column", "renamed-header", "empty-file", "not-text", "missing-file"],
)
def test_bad_file_is_refused_in_one_line_and_nothing_is_written(tmp_path, sources, damage, problem):
    target = sources / "source_crm" / "cust_info.csv"
    damage(target)
    lake = tmp_path / "lake"
    result = run_cli("run", "--source-dir", str(sources), "--lake", str(lake))
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line == f"error: {target}: {problem}" or (last_line.startswith(f"error: {target}: {problem}"))
    assert "Traceback" not in result.stderr
    repeats = [line for line in result.stderr.splitlines()[:-1] if problem in line]
    assert len(repeats) == 1, "the error is logged once (where it happened), then the error: line:\n" + "\n".join(repeats)
    assert not (lake / "bronze").exists(), "a refused file must leave no table behind"


def test_generate_datasets_command(tmp_path):
    result = run_cli("generate-datasets", "--out", str(tmp_path), "--scale", "0.01", "--seed", "1")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "source_crm" / "sales_details.csv").is_file()


def test_databricks_engine_without_credentials_fails_at_once(tmp_path, monkeypatch):
    for name in ("DATABRICKS_HOST", "DATABRICKS_TOKEN", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET", "LOGISTICS_DATABRICKS_CREDENTIALS_BLOCK"):
        monkeypatch.delenv(name, raising=False)
    result = run_cli("run", "--engine", "databricks", "--lake", str(tmp_path / "lake"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: engine=databricks needs Databricks credentials: save a DatabricksCredentials block and set "
        "LOGISTICS_DATABRICKS_CREDENTIALS_BLOCK, or set DATABRICKS_HOST and DATABRICKS_TOKEN (or DATABRICKS_CLIENT_ID "
        "and DATABRICKS_CLIENT_SECRET for a service principal)"
    ]
    assert not (tmp_path / "lake").exists()


def test_every_refused_file_is_named_in_one_run(tmp_path, sources):
    """The six exports are checked at once: the first refused file (in the contract's order)
    stops the run, and the others are logged beside it, so one run names them all."""
    customers, categories = sources / "source_crm" / "cust_info.csv", sources / "source_erp" / "PX_CAT_G1V2.csv"
    customers.write_bytes(b"")
    categories.unlink()
    lake = tmp_path / "lake"
    result = run_cli("run", "--source-dir", str(sources), "--lake", str(lake))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"error: {customers}: file is empty (expected a header line)"
    assert f"also refused: {categories}: file not found" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (lake / "bronze").exists()
