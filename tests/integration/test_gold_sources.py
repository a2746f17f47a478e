"""How gold reads the lake, on real Delta tables: the views of the tables' Parquet files
(tasks/gold/lake_views.py) and the `lake` source plugin's copies (tasks/gold/lake_source.py)
hold what delta-rs reads, column for column and row for row; a table the data files alone do
not describe gets no view and is copied delta-rs's way."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from dbt.adapters.duckdb.utils import SourceConfig
from deltalake import DeltaTable, Field, WriterProperties, write_deltalake

from logistics_pipeline.tasks.gold.lake_source import Plugin
from logistics_pipeline.tasks.gold.lake_views import LAKE_INPUTS, LAKE_SCHEMAS, lake_views
from logistics_pipeline.tasks.local.lake import Lake
from logistics_pipeline.tasks.local.quarantine import QUARANTINE_TABLES
from tests.child_memory import run_in_a_child
from tests.local_layers import build_local_layers, write_history_and_quality


GROWTH_LIMIT_MB = 600
"""Peak RSS a copy of 6 M rows (five columns) into a DuckDB file under a 300 MB memory_limit may
add to the process. Measured on the 2-core machine: 182 / 241 / 327 MB for 2 / 6 / 12 M rows
through DuckDB's Parquet reader; 539 / 1,084 / 1,570 MB through a pyarrow dataset (dbt-duckdb's
`delta` plugin's way: its Arrow ingest is beyond the limit and grows with the table)."""

COPY_IN_A_CHILD = """
import json, sys, duckdb
from dbt.adapters.duckdb.utils import SourceConfig
from logistics_pipeline.tasks.gold.lake_source import Plugin
uri, db = sys.argv[1:3]
con = duckdb.connect(db)
con.execute("set memory_limit='300MB'")
con.execute("set preserve_insertion_order=false")
before = resident_kb("VmRSS")
lake, layer, table = uri.rsplit("/", 2)
plugin, cursor = Plugin(name="lake", plugin_config={"lake": lake}), con.cursor()
plugin.configure_cursor(cursor)
cursor.register("sales_df", plugin.load(SourceConfig(table, table, layer, None, {}, [])))
cursor.execute("create table sales as select * from sales_df")
growth_mb = (resident_kb("VmHWM") - before) // 1024
print(json.dumps({"growth_mb": growth_mb, "rows": cursor.execute("select count(*) from sales").fetchone()[0]}))
"""


@pytest.fixture(scope="module")
def lake(tmp_path_factory, generated_sources) -> Lake:
    """Bronze, silver, quarantine, history and quality of the generated export (dirt included)."""
    lake = Lake(str(tmp_path_factory.mktemp("gold-sources") / "lake"))
    write_history_and_quality(lake, build_local_layers(generated_sources, lake))
    return lake


def load(uri: str, con: duckdb.DuckDBPyConnection, name: str = "loaded") -> object:
    """Load as dbt-duckdb does: configure a cursor, load through the plugin, copy into a table."""
    plugin, source = plugin_and_source(uri)
    cursor = con.cursor()
    plugin.configure_cursor(cursor)
    loaded = plugin.load(source)
    cursor.register(f"{name}_df", loaded)
    cursor.execute(f"create table {name} as select * from {name}_df")
    return loaded


def plugin_and_source(uri: str) -> tuple[Plugin, SourceConfig]:
    """The ``lake`` plugin and the source that name the table at ``uri``: ``<lake>/<layer>/<table>``,
    the lake in the plugin's config (profiles.yml) and the layer as the source's schema."""
    lake, layer, table = uri.rsplit("/", 2)
    return Plugin(name="lake", plugin_config={"lake": lake}), SourceConfig(table, table, layer, None, {"materialization": "table"}, [])


def assert_same_as_delta_rs(con: duckdb.DuckDBPyConnection, uri: str) -> None:
    """The copy equals delta-rs's read of the table: the same columns and types, in the same
    order, and the same rows (as a multiset)."""
    con.register("expected_df", DeltaTable(uri).to_pyarrow_dataset())
    con.execute("create table expected as select * from expected_df")
    assert con.execute("describe loaded").fetchall() == con.execute("describe expected").fetchall(), uri
    counts = con.execute("select (select count(*) from loaded), (select count(*) from expected)").fetchone()
    assert counts[0] == counts[1], uri
    differing = con.execute("select count(*) from ((select * from loaded except all select * from expected) union all (select * from expected except all select * from loaded))").fetchone()[0]
    assert differing == 0, uri


def test_every_table_gold_reads_is_copied_by_the_parquet_reader_as_delta_rs_reads_it(lake):
    uris = [lake.uri(layer, table) for layer, table in LAKE_INPUTS] + [lake.uri("quarantine", table) for table in QUARANTINE_TABLES]
    copied = 0
    for uri in uris:
        if DeltaTable.is_deltatable(uri) and DeltaTable(uri).file_uris():
            with duckdb.connect() as con:
                loaded = load(uri, con)
                assert isinstance(loaded, duckdb.DuckDBPyRelation), f"{uri} was not read by DuckDB's Parquet reader"
                assert_same_as_delta_rs(con, uri)
                copied += 1
    assert copied >= 10  # the six silver tables, four history tables, quality and some quarantine


def test_every_table_gold_reads_has_a_view_while_dbt_runs_and_none_after(lake, tmp_path):
    gold, viewed = str(tmp_path / "gold.duckdb"), 0
    with lake_views(gold, lake.root):
        with duckdb.connect(gold) as con:
            for layer, table in LAKE_INPUTS:
                uri = lake.uri(layer, table)
                if not (DeltaTable.is_deltatable(uri) and DeltaTable(uri).file_uris()):  # the stream's, before any order
                    continue
                con.execute(f'create or replace table loaded as select * from "{layer}"."{table}"')
                assert_same_as_delta_rs(con, uri)
                con.execute("drop table expected")
                viewed += 1
    assert viewed >= 10  # the six silver tables, four history tables and quality
    with duckdb.connect(gold) as con:
        schemas = {name for (name,) in con.execute("select schema_name from information_schema.schemata").fetchall()}
    assert not schemas & set(LAKE_SCHEMAS), "the views name files a vacuum deletes: none may outlive the block"


def test_a_table_without_a_view_is_left_to_the_plugin(tmp_path):
    """A partitioned table, or one whose newest column no data file has yet, gets no view."""
    partitioned, evolved = str(tmp_path / "silver" / "crm_cust_info"), str(tmp_path / "silver" / "crm_prd_info")
    write_deltalake(partitioned, pa.table({"id": pa.array([1, 2], pa.int64()), "region": ["north", "south"]}), partition_by=["region"])
    write_deltalake(evolved, pa.table({"id": pa.array([1], pa.int64())}))
    DeltaTable(evolved).alter.add_columns([Field("city", "string", nullable=True)])
    gold = str(tmp_path / "gold.duckdb")
    with lake_views(gold, str(tmp_path), [("silver", "crm_cust_info"), ("silver", "crm_prd_info"), ("silver", "missing")]), duckdb.connect(gold) as con:
        assert con.execute("select count(*) from information_schema.tables where table_schema = 'silver'").fetchone()[0] == 0


def test_a_column_added_later_reads_null_in_older_files(tmp_path):
    uri = str(tmp_path / "evolved")
    write_deltalake(uri, pa.table({"id": pa.array([1, 2], pa.int64()), "name": ["a", "b"]}))
    write_deltalake(uri, pa.table({"id": pa.array([3], pa.int64()), "name": ["c"], "city": ["Oslo"]}), mode="append", schema_mode="merge")
    with duckdb.connect() as con:
        assert isinstance(load(uri, con), duckdb.DuckDBPyRelation)
        assert_same_as_delta_rs(con, uri)
        assert con.execute("select id, city from loaded order by id").fetchall() == [(1, None), (2, None), (3, "Oslo")]


@pytest.mark.parametrize("case", ["partitioned", "glob characters in its path"])
def test_a_table_the_data_files_do_not_describe_alone_is_read_the_delta_rs_way(tmp_path, case):
    data = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "region": ["north", "south", "north"]})
    uri = str(tmp_path / ("sales #?eu*" if case == "glob characters in its path" else "sales"))
    if case == "partitioned":
        write_deltalake(uri, data, partition_by=["region"])
    else:
        write_deltalake(uri, data)
    with duckdb.connect() as con:
        assert not isinstance(load(uri, con), duckdb.DuckDBPyRelation)
        assert_same_as_delta_rs(con, uri)


def test_an_empty_table_is_read_in_sql_with_delta_rs_types(tmp_path):
    """No data file to read and no Arrow: a select of no rows, typed as delta-rs reads the table."""
    uri = str(tmp_path / "silver" / "stream_orders")
    write_deltalake(uri, pa.schema({
        "text": pa.string(), "long": pa.int64(), "int": pa.int32(), "short": pa.int16(), "byte": pa.int8(), "float": pa.float32(),
        "double": pa.float64(), "flag": pa.bool_(), "bytes": pa.binary(), "day": pa.date32(), "at": pa.timestamp("us", tz="UTC"),
        "local_at": pa.timestamp("us"), "amount": pa.decimal128(12, 2),
    }).empty_table())
    with duckdb.connect() as con:
        assert isinstance(load(uri, con), duckdb.DuckDBPyRelation)
        assert_same_as_delta_rs(con, uri)
    gold = str(tmp_path / "gold.duckdb")
    with lake_views(gold, str(tmp_path), [("silver", "stream_orders")]), duckdb.connect(gold) as con:
        assert con.execute('select count(*) from "silver"."stream_orders"').fetchone() == (0,)


def test_a_table_that_does_not_exist_is_named(tmp_path: Path):
    with duckdb.connect() as con, pytest.raises(FileNotFoundError, match="nothing here.*does not exist: run the silver layer first"):
        load(str(tmp_path / "nothing here"), con)


def test_copying_six_million_rows_into_gold_does_not_go_through_arrow(tmp_path):
    rows = 6_000_000
    number = pc.cast(pa.array(range(rows), pa.int64()), pa.string())
    uri = str(tmp_path / "sales")
    write_deltalake(uri, pa.table({
        "sls_ord_num": pc.binary_join_element_wise("SO", number, ""),
        "sls_prd_key": pc.binary_join_element_wise("BK-R93R-", pc.cast(pc.divide(pa.array(range(rows)), 7), pa.string()), ""),
        "sls_cust_id": pa.array(range(rows), pa.int64()),
        "sls_sales": pa.array(range(rows), pa.float64()),
        "note": pc.binary_join_element_wise("a note on order line ", number, ""),
    }), writer_properties=WriterProperties(max_row_group_size=131_072))

    result = run_in_a_child(COPY_IN_A_CHILD, uri, str(tmp_path / "gold.duckdb"))  # its peak RSS is the copy's alone
    assert result["rows"] == rows
    assert result["growth_mb"] < GROWTH_LIMIT_MB, f"copying {rows:,} rows into gold grew the peak RSS by {result['growth_mb']} MB"


def test_a_table_whose_files_do_not_open_gets_no_view(tmp_path):
    """A damaged data file stops no view creation with DuckDB's traceback: the plugin's copy meets it inside dbt."""
    uri = tmp_path / "silver" / "crm_cust_info"
    write_deltalake(str(uri), pa.table({"id": pa.array([1, 2], pa.int64())}))
    next(uri.glob("*.parquet")).write_bytes(b"not parquet")
    gold = str(tmp_path / "gold.duckdb")
    with lake_views(gold, str(tmp_path), [("silver", "crm_cust_info")]), duckdb.connect(gold) as con:
        assert con.execute("select count(*) from information_schema.tables where table_schema = 'silver'").fetchone()[0] == 0
