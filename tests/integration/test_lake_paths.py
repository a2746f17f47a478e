"""A lake under a folder named with a space, '#', '?', '%' or a non-ASCII letter: delta-rs
percent-encodes such paths in the data file names it gives (polars then finds no file) and
gives no history at all under '#' or '?'. Every read of the lake goes through tasks.local.lake."""

from __future__ import annotations

import os

import polars as pl
import pytest
from deltalake import DeltaTable

from logistics_pipeline.tasks.local import lake

NAMES = ["plain", "a space", "hash#1", "what?", "100%", "é", "all of #?% é"]


@pytest.fixture(params=NAMES)
def table_uri(request, tmp_path) -> str:
    uri = str(tmp_path / request.param / "silver" / "t")
    lake.overwrite(uri, pl.DataFrame({"a": [1, 2, 3]}), input_fingerprint="first", metadata={"logistics.note": "v0"})
    lake.overwrite(uri, pl.DataFrame({"a": [4, 5]}), input_fingerprint="second", metadata={"logistics.note": "v1"})
    return uri


def test_reads_history_and_health_do_not_depend_on_the_folder_name(table_uri):
    assert lake.read_table(table_uri)["a"].to_list() == [4, 5]
    assert lake.read_table(table_uri, version=0, columns=["a"])["a"].to_list() == [1, 2, 3]
    assert lake.scan_table(table_uri).collect()["a"].to_list() == [4, 5]
    assert lake.scan_table(table_uri, version=0).select(pl.len()).collect().item() == 3, "a count needs no column"
    assert lake.scan_table(table_uri).filter(pl.col("a") > 4).select(pl.len()).collect().item() == 1
    assert lake.table_problem(table_uri) is None
    assert lake.recorded_input(table_uri) == "second"
    assert lake.table_state(table_uri).startswith(f"{table_uri}@v1:")
    history = lake.commit_history(DeltaTable(table_uri))
    assert [(c["version"], c["logistics.input"], c["logistics.note"]) for c in history] == [(1, "second", "v1"), (0, "first", "v0")]
    assert [c["version"] for c in lake.commit_history(DeltaTable(table_uri), limit=1)] == [1]


def test_history_read_from_the_log_is_what_delta_rs_gives(tmp_path):
    """The fallback for '#' and '?' reads the same commits delta-rs' history() gives elsewhere."""
    plain, odd = str(tmp_path / "plain" / "t"), str(tmp_path / "odd#?" / "t")
    for uri in (plain, odd):
        lake.overwrite(uri, pl.DataFrame({"a": [1]}), input_fingerprint="x", metadata={"logistics.n": 1})
        lake.overwrite(uri, pl.DataFrame({"a": [2]}), input_fingerprint="y")
    assert DeltaTable(odd).history() == [], "delta-rs now reads this history: commit_history's fallback can go"

    def comparable(commits):
        return [{k: v for k, v in c.items() if k not in ("timestamp", "operationMetrics")} for c in commits]

    assert comparable(lake.commit_history(DeltaTable(odd))) == comparable(DeltaTable(plain).history())


def test_a_lost_data_file_is_still_found_under_an_odd_name(tmp_path):
    uri = str(tmp_path / "odd #?%é" / "t")
    lake.overwrite(uri, pl.DataFrame({"a": [1]}), input_fingerprint="x")
    (data_file,) = [lake.data_file_path(f) for f in DeltaTable(uri).file_uris()]
    os.remove(data_file)
    assert "1 of its data files are missing" in lake.table_problem(uri)
