"""Concurrent runs on one lake: the lake lock (tasks/orchestration/lock.py) serialises them.

Two `run` commands started at once must leave the tables a single run leaves; the second
waits for the first with a log line naming it, and gives up after the timeout with a
one-line error. Why a lock is needed at all is shown on the stream writer itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import pytest

from tests.lake_snapshot import snapshot
from tests.reliability import ROOT, VOLATILE, CliProcess, cli_env, diff_summary, run_cli

# --- the lock on its own -------------------------------------------------------------------


def test_lock_is_reentrant_in_one_thread_and_exclusive_across_threads(tmp_path):
    from logistics_pipeline.tasks.orchestration.lock import (
        LakeLockTimeout,
        holds_lake_lock,
        lake_lock,
        read_holder,
    )

    lake = str(tmp_path / "lake")
    with lake_lock(lake, timeout_s=0) as holder:
        assert holder["pid"] == os.getpid()
        with lake_lock(lake, timeout_s=0):  # a sub-flow of the run that holds it
            assert holds_lake_lock(lake)
        assert holds_lake_lock(lake)
        assert read_holder(lake)["pid"] == os.getpid()

        errors: list[BaseException] = []

        def other_thread() -> None:
            try:
                with lake_lock(lake, timeout_s=0.5):
                    pass
            except BaseException as error:  # noqa: BLE001
                errors.append(error)

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        assert len(errors) == 1 and isinstance(errors[0], LakeLockTimeout)
        assert f"locked by pid {os.getpid()}" in str(errors[0]) and "\n" not in str(errors[0])
    assert not holds_lake_lock(lake)
    assert read_holder(lake) is None  # released: the file no longer names a holder
    with lake_lock(lake, timeout_s=0):  # and it can be taken again at once
        pass


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    """The kernel drops a flock when its process dies, SIGKILL included."""
    from logistics_pipeline.tasks.orchestration.lock import lake_lock, read_holder

    lake = tmp_path / "lake"
    code = (
        "import sys, time; sys.path.insert(0, sys.argv[1]);"
        "from logistics_pipeline.tasks.orchestration.lock import lake_lock\n"
        "with lake_lock(sys.argv[2], timeout_s=0):\n"
        "    print('held', flush=True); time.sleep(600)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(ROOT), str(lake)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert read_holder(str(lake))["pid"] == holder.pid
        with pytest.raises(Exception, match=f"locked by pid {holder.pid}"):
            with lake_lock(str(lake), timeout_s=0.3):
                pass
    finally:
        holder.kill()
        holder.wait()
    with lake_lock(str(lake), timeout_s=0):  # at once, although the file still names the dead holder
        pass


def test_object_store_lakes_are_not_locked():
    from logistics_pipeline.tasks.orchestration.lock import lake_lock

    with lake_lock("s3://bucket/lake", timeout_s=0) as holder:
        assert holder is None


# --- why: the stream's exactly-once check is not atomic with its append ---------------------


def test_without_the_lock_two_stream_writers_duplicate_a_batch(tmp_path, monkeypatch):
    """Both writers read the recorded offset before either commits; delta-rs appends do not
    conflict, so both commit the same lines. This is what the lake lock prevents."""
    from deltalake import write_deltalake

    import logistics_pipeline.tasks.local.stream as stream_bronze

    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "orders-1.jsonl").write_text("".join(f'{{"n": {i}}}\n' for i in range(10)))
    table = str(tmp_path / "kafka_orders")
    stream_bronze.write_batch(table, next(stream_bronze.landing_batches(landing, table, 5)))  # the table exists

    both_checked = threading.Barrier(2)
    first_done = threading.Event()
    order = iter(["first", "second"])

    def interleaved_write(*args, **kwargs):
        both_checked.wait(timeout=10)  # each writer has done its offset check
        if next(order) == "first":
            write_deltalake(*args, **kwargs)
            first_done.set()
        else:
            first_done.wait(timeout=10)
            write_deltalake(*args, **kwargs)  # a fresh snapshot, which already has the first commit

    monkeypatch.setattr(stream_bronze, "write_deltalake", interleaved_write)
    batches = [list(stream_bronze.landing_batches(landing, table, 5))[0] for _ in range(2)]  # lines 5..9, twice
    threads = [threading.Thread(target=stream_bronze.write_batch, args=(table, batch)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rows = pl.read_delta(table)
    assert rows.height == 15, "the race did not happen"
    assert rows["offset"].n_unique() == 10  # five lines written twice


# --- two real runs at once ------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_lake(tmp_path_factory, prefect_server) -> tuple[Path, Path]:
    """Generated sources and a lake with one landing file of orders, nothing ingested yet."""
    from logistics_pipeline.datasets.generate import generate_datasets
    from logistics_pipeline.flows.produce import produce_messages

    root = tmp_path_factory.mktemp("concurrent")
    sources = root / "sources"
    generate_datasets(sources, scale=0.05, seed=5)
    lake = root / "template"
    produce_messages(count=1500, seed=41, bad_fraction=0.05, lake=str(lake))
    return sources, lake


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_two_runs_started_at_once_equal_a_single_run(small_lake, tmp_path, monkeypatch):
    import shutil

    from logistics_pipeline.flows.pipeline import logistics_pipeline

    sources, template = small_lake
    lake, single = tmp_path / "lake", tmp_path / "single"
    shutil.copytree(template, lake)
    shutil.copytree(template, single)
    env = cli_env(lake, sources, LOGISTICS_STREAM_BATCH_MESSAGES="200", LOGISTICS_LOCK_TIMEOUT_SECONDS="600")
    runs = [CliProcess.start(["run"], env) for _ in range(2)]
    codes = [run.finish(timeout=900) for run in runs]
    assert codes == [0, 0], "\n\n".join(run.tail() for run in runs)

    waited = [run for run in runs if "waiting for the lake lock held by pid" in run.output]
    assert len(waited) == 1, "exactly one run should have waited for the other"
    other = runs[1 - runs.index(waited[0])]
    line = next(line for line in waited[0].output.splitlines() if "waiting for the lake lock" in line)
    assert f"pid {other.process.pid} (flow run " in line and "logistics-pipeline" in line

    monkeypatch.setenv("LOGISTICS_STREAM_BATCH_MESSAGES", "200")
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    logistics_pipeline(source_dir=str(sources), lake=str(single))
    expected, actual = snapshot(single, drop=VOLATILE), snapshot(lake, drop=VOLATILE)
    assert actual == expected, diff_summary(expected, actual)
    offsets = pl.read_delta(str(lake / "bronze" / "kafka_orders")).select("_source", "offset")
    assert offsets.height == offsets.n_unique() == 1500


@pytest.mark.usefixtures("prefect_server")
def test_a_run_that_cannot_get_the_lock_fails_with_one_line(small_lake, tmp_path):
    from logistics_pipeline.tasks.orchestration.lock import lake_lock

    sources, _ = small_lake
    lake = tmp_path / "lake"
    with lake_lock(str(lake), timeout_s=0):
        started = time.monotonic()
        done = run_cli(["bronze"], cli_env(lake, sources, LOGISTICS_LOCK_TIMEOUT_SECONDS="2"), timeout=300)
        took = time.monotonic() - started
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: the lake {lake} is locked by pid {os.getpid()}"), last
    assert "not released within 2s" in last
    assert "waiting for the lake lock held by pid" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert not (lake / "bronze").exists(), "nothing may be written without the lock"
    assert took < 120
