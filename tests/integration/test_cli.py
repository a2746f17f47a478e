"""The console script as a person uses it: exit codes, one-line errors, nothing half-written."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_runner import run_cli

pytestmark = pytest.mark.usefixtures("prefect_server")



def test_help_explains_the_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("run", "bronze", "silver", "gold", "generate-datasets"):
        assert command in result.stdout
    run_help = run_cli("run", "--help").stdout
    for option in ("--source-dir", "--lake", "--orders"):
        assert option in run_help


def test_run_succeeds_and_prints_where_gold_is(tmp_path, sources):
    lake = tmp_path / "lake"
    result = run_cli("run", "--source-dir", str(sources), "--lake", str(lake))
    assert result.returncode == 0, result.stderr
    assert str(lake / "gold.duckdb") in result.stdout
    assert (lake / "gold.duckdb").is_file()


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
