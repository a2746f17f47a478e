"""The Spark entrypoint equals the local engine, row for row, on real (local) PySpark.

Both engines run over the same sources into their own lake: the local one through
``tasks.local.bronze`` and ``tasks.local.silver`` (polars + delta-rs), the Spark one through
``tasks.spark.job.main`` (Delta written by Spark). Every bronze, silver and quarantine table
is read back with polars and compared exactly: same columns and types, same rows (floats bit
for bit, dates as dates), ``_line``, ``_batch_id`` and ``_bronze_error`` included; only
``_ingested_at`` differs by design. The stream is in ``test_spark_stream.py``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable

from logistics_pipeline.tasks.core.contract import SOURCES, STREAM_ORDERS
from logistics_pipeline.tasks.core.csv_source import SourceFileError, fingerprint_csv
from logistics_pipeline.tasks.core.quality import TableCounts
from logistics_pipeline.tasks.core.quality_log import QUALITY_LAYER, QUALITY_TABLE, quality_rows
from logistics_pipeline.tasks.core.runner import run_silver_table
from logistics_pipeline.tasks.core.silver import SILVER_TABLES
from logistics_pipeline.tasks.errors import PipelineError
from logistics_pipeline.tasks.local.bronze import ingest_csv
from logistics_pipeline.tasks.local.lake import Lake
from logistics_pipeline.tasks.local.store import DeltaStore
from logistics_pipeline.tasks.spark.job import main
from logistics_pipeline.tasks.spark.tables import table_name
from tests.fixtures.spark import assert_same

pytestmark = pytest.mark.spark

VOLATILE = ("_ingested_at",)


def run_local(sources: Path, root: Path) -> dict[str, TableCounts | str]:
    """The local engine's bronze and silver as plain functions (no Prefect server): the counts
    per silver table, or the message of the error that stopped it."""
    lake = Lake(str(root))
    for source in SOURCES:
        path = source.path(sources)
        ingest_csv(path, source, lake.uri("bronze", source.table), fingerprint_csv(path, source))
    results: dict[str, TableCounts | str] = {}
    for table in SILVER_TABLES:
        try:
            results[table.name] = run_silver_table(DeltaStore(lake), table)
        except PipelineError as error:
            results[table.name] = str(error)
    DeltaStore(lake).create_empty_stream_orders()  # no stream here: an empty stream_orders, as the silver-layer flow leaves it
    return results


def run_spark(spark, source_path: str, target: list[str]) -> tuple[dict, dict]:
    bronze = main(["bronze", "--source-path", source_path, *target], spark=spark)
    silver = main(["silver", *target], spark=spark)
    return bronze, silver


def comparable(frame: pl.DataFrame) -> pl.DataFrame:
    """Without the volatile columns, rows sorted by every column."""
    frame = frame.drop([column for column in VOLATILE if column in frame.columns])
    return frame.sort(frame.columns, nulls_last=True)


def lake_table(root: Path, layer: str, name: str) -> pl.DataFrame:
    return comparable(pl.read_delta(str(root / layer / name)))


def versions(root: Path) -> dict[str, int]:
    return {f"{path.parent.name}/{path.name}": DeltaTable(str(path)).version() for path in root.glob("*/*")}


# --- a generated dataset and the reference dataset, through path-based Delta tables ------------

@pytest.fixture(scope="module")
def generated_small(tmp_path_factory) -> Path:
    from logistics_pipeline.datasets.generate import generate_datasets

    out = tmp_path_factory.mktemp("spark-sources")
    generate_datasets(out, scale=0.05, seed=3)
    return out


@pytest.fixture(scope="module", params=["generated", "reference"])
def lakes(request, spark, tmp_path_factory):
    """(local lake, spark lake, local results, spark summaries) for one dataset."""
    sources = request.getfixturevalue("generated_small" if request.param == "generated" else "reference_sources")
    local_root = tmp_path_factory.mktemp(f"local-{request.param}")
    spark_root = tmp_path_factory.mktemp(f"spark-{request.param}")
    started = time.perf_counter()
    local_results = run_local(sources, local_root)
    local_seconds = time.perf_counter() - started
    started = time.perf_counter()
    bronze, silver = run_spark(spark, str(sources), ["--lake", str(spark_root)])
    print(f"\n{request.param}: local engine {local_seconds:.1f}s, spark entrypoint {time.perf_counter() - started:.1f}s")
    return local_root, spark_root, local_results, {"bronze": bronze, "silver": silver, "sources": sources, "dataset": request.param}


def test_bronze_tables_match(lakes):
    local_root, spark_root, _, _ = lakes
    for source in SOURCES:
        assert_same(lake_table(local_root, "bronze", source.table), lake_table(spark_root, "bronze", source.table), f"bronze/{source.table}")


def test_silver_and_quarantine_tables_match(lakes):
    local_root, spark_root, _, _ = lakes
    for table in SILVER_TABLES:
        for layer in ("silver", "quarantine"):
            assert_same(lake_table(local_root, layer, table.name), lake_table(spark_root, layer, table.name), f"{layer}/{table.name}")
    stream_orders = lake_table(spark_root, "silver", STREAM_ORDERS)  # no kafka_orders: empty, for gold to read
    assert_same(lake_table(local_root, "silver", STREAM_ORDERS), stream_orders, f"silver/{STREAM_ORDERS}")
    assert stream_orders.is_empty()


def test_counts_match_and_reconcile(lakes):
    _, _, local_results, summaries = lakes
    spark_counts = {row["table"]: TableCounts(**row) for row in summaries["silver"]["tables"]}
    assert spark_counts == local_results
    assert any(counts.quarantined for counts in spark_counts.values())
    assert any(counts.merged_duplicates for counts in spark_counts.values())


def test_history_and_quality_results_match(lakes):
    """The job keeps the dimensions' history and appends its quality results as the local
    engine does (each at its own run's time and id)."""
    local_root, spark_root, local_results, _ = lakes
    for table in SILVER_TABLES:
        if table.keeps_history and isinstance(local_results[table.name], TableCounts):
            history = [lake_table(root, "history", table.name).drop("valid_from", "valid_to") for root in (local_root, spark_root)]
            assert_same(*history, f"history/{table.name}")
    spark_quality = pl.read_delta(str(spark_root / QUALITY_LAYER / QUALITY_TABLE))
    assert set(spark_quality["engine"]) == {"spark"} and spark_quality["run_id"].n_unique() == 1
    local_quality = quality_rows([c for c in local_results.values() if isinstance(c, TableCounts)], "local-run", spark_quality["run_at"][0], "spark")
    assert_same(comparable(local_quality.drop("run_id")), comparable(spark_quality.drop("run_id")), "quality/silver")


def test_a_rerun_on_the_same_input_writes_nothing(lakes, spark, capsys):
    """Nothing but the run's quality results: every run appends them."""
    _, spark_root, _, summaries = lakes
    if summaries["dataset"] != "generated":
        pytest.skip("one dataset is enough to show a rerun is a no-op")
    before = versions(spark_root)
    bronze, silver = run_spark(spark, str(summaries["sources"]), ["--lake", str(spark_root)])
    quality = f"{QUALITY_LAYER}/{QUALITY_TABLE}"
    after = versions(spark_root)
    assert after.pop(quality) == before.pop(quality) + 1
    assert after == before
    assert all(row["skipped"] for row in bronze["tables"])
    assert silver == summaries["silver"]
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == json.loads(json.dumps(silver))  # rules' pairs print as lists


# --- dirty files, Unity Catalog names (the session catalog stands in) and file:// sources ------

EDGE_CATEGORIES = (
    b"\xef\xbb\xbfID, CAT ,SUBCAT,MAINTENANCE\r\n"
    b'AC_BR,Accessories,"Racks, Bike",Yes\r\n'
    b'007,"Say ""hi""",, No\r\n'
    b"\r\n"
    b'X1,"two\r\nlines",   ,""\r\n'
    b"X2,short\n"
    b"X4,a,b,c,extra\r\n"
    b'X5,un"quoted,b,c\r\n'
    b"X6,ctl\x01,b,c\r\n"
    b"   \r\n"
    b'X3,"\xc3\xa9t\xc3\xa9 \xe2\x82\xac","a\nb\nc",last'
)
SALES_HEADER = b"sls_ord_num,sls_prd_key,sls_cust_id,sls_order_dt,sls_ship_dt,sls_due_dt,sls_sales,sls_quantity,sls_price\r\n"
DRIFTED_SALES = SALES_HEADER + b"".join(b"SO%d,BK-1,11000,20250101,20250108,20250113,25,1,\"25,0\"\r\n" % n for n in range(30))
CATALOG = ["--catalog", "spark_catalog", "--schema", "default", "--table-prefix", "edge_"]


def write_sources(root: Path, contents: dict[str, bytes]) -> Path:
    """A source folder holding ``contents`` (by table) and a bare header for every other file."""
    for source in SOURCES:
        path = source.path(root)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(contents.get(source.table, ",".join(source.columns).encode() + b"\r\n"))
    return root


def catalog_table(spark, layer: str, name: str) -> pl.DataFrame:
    arrow = spark.table(table_name(layer, name, "spark_catalog", "default", prefix="edge_")).toArrow()
    return comparable(pl.from_arrow(arrow))


def test_table_name_is_unity_catalog_three_part():
    assert table_name("silver", "crm_cust_info", "main", "logistics") == "main.logistics.silver_crm_cust_info"
    assert table_name("bronze", "erp_loc_a101", "dev", "lake", prefix="x_") == "dev.lake.x_bronze_erp_loc_a101"


def test_dirty_files_land_the_same_in_catalog_tables(spark, tmp_path, capsys):
    """BOM, CRLF and LF, quotes, quoted line breaks, blank, short, long-by-a-field, stray-quote and control-character
    rows; a drifted column type stops its own silver table only, with the local engine's message."""
    sources = write_sources(tmp_path / "sources", {"erp_px_cat_g1v2": EDGE_CATEGORIES, "crm_sales_details": DRIFTED_SALES})
    local_results = run_local(sources, tmp_path / "local")
    drift = local_results.pop("crm_sales_details")
    assert "schema drift: column sls_price" in drift

    bronze = main(["bronze", "--source-path", sources.as_uri(), *CATALOG], spark=spark)  # file://: fetched by Spark
    with pytest.raises(PipelineError) as stopped:
        main(["silver", *CATALOG], spark=spark)
    assert str(stopped.value) == drift
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["failed"] == [drift]
    assert {row["table"]: TableCounts(**row) for row in summary["tables"]} == local_results
    for source in SOURCES:
        assert_same(lake_table(tmp_path / "local", "bronze", source.table), catalog_table(spark, "bronze", source.table), f"bronze/{source.table}")
    for table in local_results:
        for layer in ("silver", "quarantine"):
            assert_same(lake_table(tmp_path / "local", layer, table), catalog_table(spark, layer, table), f"{layer}/{table}")
    categories = catalog_table(spark, "bronze", "erp_px_cat_g1v2")
    assert sorted(categories["_line"]) == [2, 3, 4, 5, 7, 8, 9, 10, 11, 12]
    assert categories["_bronze_error"].null_count() < categories.height

    again = main(["bronze", "--source-path", sources.as_uri(), *CATALOG], spark=spark)
    assert all(row["skipped"] for row in again["tables"])
    assert [row["rows"] for row in again["tables"]] == [row["rows"] for row in bronze["tables"]]
    name = table_name("silver", "erp_px_cat_g1v2", "spark_catalog", "default", prefix="edge_")
    with pytest.raises(PipelineError):
        main(["silver", *CATALOG], spark=spark)
    assert spark.sql(f"DESCRIBE HISTORY {name}").count() == 1


CATEGORIES_HEADER = b"ID,CAT,SUBCAT,MAINTENANCE\r\n"


@pytest.mark.parametrize(
    ("content", "problem", "as_uri"),
    [
        (b"ID,CAT,SUBCAT\r\nAC_BR,Accessories,Bike Racks\r\n", "missing MAINTENANCE", True),
        (b"\r\n\r\n", "file is empty", False),
        (CATEGORIES_HEADER + b"AC_BR,Acc\xe9ssories,Bike Racks,Yes\r\n", "not valid UTF-8 (byte 0xe9", False),
        (b"\xff\xfeI\x00D\x00", "encoded as UTF-16", False),
    ],
)
def test_a_bad_file_stops_bronze_before_anything_is_written(spark, tmp_path, content, problem, as_uri):
    sources = write_sources(tmp_path / "sources", {"erp_px_cat_g1v2": content})  # the last file of the contract
    source_path = sources.as_uri() if as_uri else str(sources)
    with pytest.raises(SourceFileError) as refused:
        main(["bronze", "--source-path", source_path, "--lake", str(tmp_path / "spark")], spark=spark)
    assert problem in str(refused.value)
    assert str(refused.value).startswith(f"{source_path}/source_erp/PX_CAT_G1V2.csv: ")
    assert not (tmp_path / "spark").exists()


def test_the_command_line_names_what_is_missing(capsys):
    with pytest.raises(SystemExit):
        main(["silver"])
    assert "give --catalog and --schema (Unity Catalog), or --lake PATH" in capsys.readouterr().err
