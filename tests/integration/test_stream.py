"""The order stream end to end, on a real Kafka broker and on the landing-folder transport:
produce, ingest exactly once (also across SIGKILLs), quarantine poison, fact_orders from both."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from tests.lake_snapshot import gold_frame, versions

pytestmark = pytest.mark.usefixtures("prefect_server")

ROOT = Path(__file__).resolve().parents[2]
ORDERS = 50_000


@pytest.fixture(params=["kafka", "landing"])
def transport(request, tmp_path) -> dict[str, str | None]:
    """Where the stream goes: a fresh topic on the test broker, or the lake's landing folder."""
    if request.param == "landing":
        return {"bootstrap_servers": None, "topic": None}
    bootstrap = request.getfixturevalue("kafka_bootstrap")
    return {"bootstrap_servers": bootstrap, "topic": f"orders-{tmp_path.name[-20:]}-{random.randrange(10**6)}"}


@pytest.fixture(autouse=True)
def topic_setting(monkeypatch, transport):
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    if transport["topic"]:
        monkeypatch.setenv("LOGISTICS_KAFKA_TOPIC", transport["topic"])


def bronze_stream(lake: Path) -> pl.DataFrame:
    return pl.read_delta(str(lake / "bronze" / "kafka_orders"))


def assert_exactly_once(lake: Path, expected_messages: int) -> None:
    """Every produced message is in bronze once: positions are unique and cover 0..n-1."""
    bronze = bronze_stream(lake)
    assert bronze.height == expected_messages
    positions = bronze.group_by("_source", "partition").agg(pl.len().alias("n"), pl.col("offset").n_unique().alias("u"), pl.col("offset").min().alias("lo"), pl.col("offset").max().alias("hi"))
    assert (positions["n"] == positions["u"]).all(), "a message was written twice"
    assert ((positions["hi"] - positions["lo"] + 1) == positions["n"]).all(), "a message is missing"
    assert (positions["lo"] == 0).all()


@pytest.mark.kafka
def test_produce_then_run_lands_every_order_once(tmp_path, transport, generated_sources):
    from logistics_pipeline.flows.pipeline import logistics_pipeline
    from logistics_pipeline.flows.produce import produce_messages

    lake = tmp_path / "lake"
    logistics_pipeline(source_dir=str(generated_sources), lake=str(lake))  # silver customers and products exist
    produced = produce_messages(count=ORDERS, seed=11, bad_fraction=0.05, lake=str(lake), bootstrap_servers=transport["bootstrap_servers"])
    assert produced["delivered"] == ORDERS

    logistics_pipeline(source_dir=str(generated_sources), lake=str(lake), orders=0, bootstrap_servers=transport["bootstrap_servers"])
    assert_exactly_once(lake, ORDERS)

    silver = pl.read_delta(str(lake / "silver" / "stream_orders"))
    quarantine = pl.read_delta(str(lake / "quarantine" / "stream_orders"))
    assert silver.height + quarantine.height == produced["order_lines"]
    assert silver.height == produced["good_order_lines"]
    assert set(quarantine["_rule"]) == {"not_json", "missing_field", "non_positive_price", "ship_before_order"}
    assert quarantine["offset"].null_count() == 0
    if transport["bootstrap_servers"]:
        assert quarantine["partition"].null_count() == 0

    stream_facts = gold_frame(lake, "select count(*) from fact_orders where source = 'stream'").item()
    assert stream_facts == silver.height
    unknown_products = gold_frame(lake, "select count(*) from fact_orders where product_key = '-1' and product_number like 'ZZ-UNKNOWN-%'").item()
    assert unknown_products == silver.filter(pl.col("sls_prd_key").str.starts_with("ZZ-UNKNOWN-")).height > 0
    crm_facts = gold_frame(lake, "select count(*) from fact_orders where source = 'crm'").item()
    assert crm_facts == pl.read_delta(str(lake / "silver" / "crm_sales_details")).height

    before = versions(lake)
    facts_before = gold_frame(lake, "select count(*) from fact_orders").item()
    logistics_pipeline(source_dir=str(generated_sources), lake=str(lake), orders=0, bootstrap_servers=transport["bootstrap_servers"])
    assert versions(lake) == before, "a second run with nothing new wrote to the lake"
    assert gold_frame(lake, "select count(*) from fact_orders").item() == facts_before


@pytest.mark.kafka
def test_sigkill_during_ingestion_loses_and_duplicates_nothing(tmp_path, transport, generated_sources):
    """Kill the bronze CLI at random moments (10 trials), rerun: every message is in bronze once."""
    from prefect.settings import PREFECT_API_URL

    from logistics_pipeline.flows.produce import produce_messages

    lake = tmp_path / "lake"
    env = os.environ | {
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "LOGISTICS_STREAM_BATCH_MESSAGES": "2000",
        "LOGISTICS_LAKE": str(lake),
        "LOGISTICS_SOURCE_DIR": str(generated_sources),
    }
    if transport["bootstrap_servers"]:
        env["KAFKA_BOOTSTRAP_SERVERS"] = transport["bootstrap_servers"]
    rng = random.Random(20261126)
    total = 0
    for trial in range(10):
        produced = produce_messages(count=6000, seed=100 + trial, lake=str(lake), bootstrap_servers=transport["bootstrap_servers"])
        total += produced["delivered"]
        process = subprocess.Popen([sys.executable, "-m", "logistics_pipeline.flows.cli", "bronze"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(2.0, 9.0))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        if process.returncode == 0:
            continue  # finished before the kill; the next trial kills another run
        rerun = subprocess.run([sys.executable, "-m", "logistics_pipeline.flows.cli", "bronze"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        assert_exactly_once(lake, total)
    assert_exactly_once(lake, total)
