"""Whether a Delta table can be trusted, and what a table was built from (its state)."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable, write_deltalake

from logistics_pipeline.tasks.local import lake

ROWS = pl.DataFrame({"a": list(range(10))})


def write(uri: str, frame: pl.DataFrame = ROWS) -> None:
    lake.overwrite(uri, frame, input_fingerprint="x")


def log_file(uri: str, version: int) -> Path:
    return Path(uri) / "_delta_log" / f"{version:020d}.json"


@pytest.fixture
def table(tmp_path) -> str:
    uri = str(tmp_path / "silver" / "t")
    write(uri)
    write(uri, ROWS.head(7))
    return uri


def test_a_sound_table_has_no_problem(table):
    assert lake.table_problem(table) is None
    assert lake.table_problem(table + "-absent") is None


def test_a_truncated_log_is_named_in_one_line(table):
    log_file(table, 1).write_text('{"commitInfo":{"timest')
    problem = lake.table_problem(table)
    assert problem.startswith("its Delta log cannot be read") and "\n" not in problem
    with pytest.raises(lake.DamagedTableError, match=f"Delta table {table}: its Delta log cannot be read"):
        lake.table_state(table)


def test_a_missing_data_file_is_found(table):
    Path(DeltaTable(table).file_uris()[0]).unlink()
    assert "data files are missing" in lake.table_problem(table)


def test_a_lost_add_action_is_found(table):
    path = log_file(table, 1)
    path.write_text("".join(line for line in path.read_text().splitlines(keepends=True) if '"add"' not in line))
    assert lake.table_state(table) is not None  # the log still reads: as an empty table
    assert "its log lists 0 rows where its writes added 7" in lake.table_problem(table)


def test_appends_are_counted_back_to_the_last_full_write(table):
    write_deltalake(table, ROWS.head(3).to_arrow(), mode="append")
    assert lake.rows_written(DeltaTable(table)) == 10
    assert lake.table_problem(table) is None


def test_a_table_reset_by_hand_to_a_version_number_seen_before_has_another_state(table):
    before = lake.table_state(table)
    log_file(table, 1).unlink()  # back to v0 by hand...
    write(table, ROWS.head(2))  # ...and written again: v1 once more, with other content
    after = lake.table_state(table)
    assert before.startswith(f"{table}@v1:") and after.startswith(f"{table}@v1:")
    assert before != after


def test_a_recreated_table_has_another_state(tmp_path):
    uri = str(tmp_path / "t")
    write(uri)
    before = lake.table_state(uri)
    for path in Path(uri).rglob("*"):
        if path.is_file():
            os.remove(path)
    write(uri)
    assert lake.table_state(uri).startswith(f"{uri}@v0:") and lake.table_state(uri) != before


def test_set_aside_moves_a_damaged_table_out_of_the_lake(table):
    log_file(table, 1).write_text("{")
    warning = lake.repair(table, "bronze t")
    assert warning.startswith(f"Delta table {table}: its Delta log cannot be read") and "rebuilding it from bronze t" in warning
    assert not Path(table).exists()
    assert len(list((Path(table).parents[1] / "_damaged" / "silver").iterdir())) == 1
    assert lake.repair(table, "bronze t") is None


def test_object_store_tables_are_never_moved():
    with pytest.raises(lake.DamagedTableError, match="s3://bucket/lake/silver/t: broken; delete or restore it"):
        lake.set_aside("s3://bucket/lake/silver/t", "broken")

