"""Table maintenance (tasks/local/maintenance.py, flows/maintenance.py): compaction, vacuum and
checkpoints, and what delta-rs does when they meet the pipeline's writes."""

from __future__ import annotations

import threading
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError

from logistics_pipeline.tasks.local import lake as lake_io
from logistics_pipeline.tasks.local.maintenance import MaintenanceSettings, TableRef, maintain_table
from logistics_pipeline.tasks.local.stream import landing_app_id, landing_batches, write_batch
from tests.lake_snapshot import snapshot

LINES = 2000


def landing_file(folder: Path, name: str, lines: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("".join(f'{{"order": {i}, "pad": "{"x" * 40}"}}\n' for i in range(lines)))
    return path


def stream_table(lake: Path, batch: int, lines: int = LINES, name: str = "orders-a.jsonl") -> tuple[str, Path]:
    """bronze/kafka_orders of a lake, fed from one landing file in micro-batches (one commit each)."""
    landing = lake / "landing" / "orders"
    landing_file(landing, name, lines)
    table = str(lake / "bronze" / "kafka_orders")
    for b in landing_batches(landing, table, batch):
        write_batch(table, b)
    return table, landing


def assert_exactly_once(table: str, landing: Path, lines: int) -> None:
    rows = pl.read_delta(table)
    assert rows.height == lines
    assert rows.select("_source", "offset").n_unique() == lines
    for path in landing.glob("*.jsonl"):
        assert DeltaTable(table).transaction_version(landing_app_id(path.name)) == len(path.read_text().splitlines())
    assert list(landing_batches(landing, table, 100)) == [], "a rerun would ingest lines again"


@pytest.mark.usefixtures("prefect_server")
def test_maintenance_compacts_200_micro_batches_and_keeps_the_content(tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from logistics_pipeline.flows.maintenance import lake_maintenance

    lake = tmp_path / "lake"
    table, landing = stream_table(lake, batch=LINES // 200)
    lake_io.overwrite(str(lake / "silver" / "small"), pl.DataFrame({"k": [1, 2]}), input_fingerprint="in-1")
    assert len(DeltaTable(table).file_uris()) == 200
    before = snapshot(lake)

    state = lake_maintenance(lake=str(lake), return_state=True)
    rows = {row["table"]: row for row in state.result()}
    stream = rows["bronze/kafka_orders"]
    assert stream["files_before"] == 200 and stream["files_after"] <= 3, stream
    assert stream["compacted_removed"] == 200
    assert stream["vacuumed"] == 0, "nothing is older than the default retention (168 h)"
    assert stream["files_on_disk_after"] == 200 + stream["files_after"]
    assert rows["silver/small"]["mode"] == "overwrite"
    assert snapshot(lake) == before
    assert_exactly_once(table, landing, LINES)
    assert pl.read_delta(table, version=150).height == 151 * LINES // 200, "time travel within the retention still works"

    run = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]))
    with get_client(sync_client=True) as client:  # this run's artifacts only: the session's server holds many
        artifacts = client.read_artifacts(artifact_filter=run)
    mine = [a for a in artifacts if a.key == "lake-maintenance"]
    assert len(mine) == 1 and "files_before" in str(mine[0].data) and "bronze/kafka_orders" in str(mine[0].data)


def test_vacuum_removes_old_files_only_past_the_retention(tmp_path):
    table, landing = stream_table(tmp_path, batch=100)  # 20 commits
    ref = TableRef("bronze", "kafka_orders", table)
    maintain_table(ref, MaintenanceSettings())  # compact; keep everything for 168 h
    assert len(list(Path(table).glob("*.parquet"))) == 21
    assert pl.read_delta(table, version=5).height == 600

    with pytest.raises(Exception, match="retention of 0 h"):
        maintain_table(ref, MaintenanceSettings(retention_hours=0))  # the table's minimum is enforced

    orphan = Path(table) / "part-00000-left-by-a-killed-writer.snappy.parquet"
    orphan.write_bytes(b"PAR1")
    result = maintain_table(ref, MaintenanceSettings(retention_hours=0, enforce_retention_duration=False))
    assert result.vacuumed == 21 and result.files_on_disk_after == 1
    assert not orphan.exists()
    assert pl.read_delta(table).height == LINES, "the current version still reads"
    with pytest.raises(Exception):
        pl.read_delta(table, version=5)  # time travel past the retention is gone
    assert_exactly_once(table, landing, LINES)
    assert (Path(table) / "_delta_log" / "_last_checkpoint").exists()


def test_appends_committing_during_a_compaction_are_neither_lost_nor_duplicated(tmp_path):
    """Deterministic: the compaction read the table before three batches were appended, and
    commits after them. delta-rs rebases it; the batches' offsets stay in the log."""
    table, landing = stream_table(tmp_path, batch=100, lines=1000)
    stale = DeltaTable(table)
    landing_file(landing, "orders-b.jsonl", 300)
    for batch in landing_batches(landing, table, 100):
        write_batch(table, batch)
    metrics = stale.optimize.compact()
    assert metrics["numFilesRemoved"] == 10  # only what it had read
    assert_exactly_once(table, landing, 1300)


def test_maintenance_in_a_thread_while_a_stream_appends(tmp_path):
    """Randomised: maintenance loops (compact, vacuum, checkpoint) while 100 batches commit."""
    table, landing = stream_table(tmp_path, batch=100, lines=500)
    ref = TableRef("bronze", "kafka_orders", table)
    landing_file(landing, "orders-b.jsonl", 5000)
    done = threading.Event()
    results, errors = [], []

    def maintain_loop() -> None:
        while not done.is_set():
            try:
                results.append(maintain_table(ref, MaintenanceSettings()))
            except Exception as error:  # noqa: BLE001
                errors.append(error)

    thread = threading.Thread(target=maintain_loop)
    thread.start()
    try:
        for batch in landing_batches(landing, table, 50):
            write_batch(table, batch)
    finally:
        done.set()
        thread.join()
    assert not errors, errors[:3]
    assert sum(r.compacted_removed for r in results) > 0
    assert_exactly_once(table, landing, 5500)
    interleaved = [h for h in DeltaTable(table).history() if h["operation"] == "OPTIMIZE" and h["readVersion"] != h["version"] - 1]
    print(f"{len(results)} maintenance passes, {len(interleaved)} compactions committed over concurrent appends")


def test_an_overwrite_racing_a_compaction(tmp_path):
    """Why the overwritten tables are maintained only under the lake lock.

    An overwrite that commits first makes the compaction fail (harmless). But an overwrite
    that read the table before a compaction committed still commits after it, and keeps the
    compacted file: the rows it replaced come back (delta-rs 1.6). If the second half starts
    failing, delta-rs has fixed it."""
    uri = str(tmp_path / "silver")
    for i in range(5):
        write_deltalake(uri, pl.DataFrame({"k": [i]}).to_arrow(), mode="append")

    stale = DeltaTable(uri)
    write_deltalake(uri, pl.DataFrame({"k": [100]}).to_arrow(), mode="overwrite")
    with pytest.raises(CommitFailedError):
        stale.optimize.compact()
    assert pl.read_delta(uri)["k"].to_list() == [100]

    for i in range(3):
        write_deltalake(uri, pl.DataFrame({"k": [i]}).to_arrow(), mode="append")
    writer_snapshot = DeltaTable(uri)  # the pipeline's overwrite has read the table ...
    DeltaTable(uri).optimize.compact()  # ... maintenance compacts and commits ...
    write_deltalake(writer_snapshot, pl.DataFrame({"k": [200]}).to_arrow(), mode="overwrite")  # ... the overwrite commits
    assert sorted(pl.read_delta(uri)["k"].to_list()) == [0, 1, 2, 100, 200], "delta-rs no longer resurrects compacted rows"


def test_maintenance_commits_keep_what_the_table_was_built_from(tmp_path):
    """A rerun after maintenance still sees the table as up to date (no rebuild for nothing)."""
    from logistics_pipeline.tasks.core.runner import recorded_counts
    from logistics_pipeline.tasks.local.lake import Lake
    from logistics_pipeline.tasks.local.store import DeltaStore

    uri = str(tmp_path / "silver" / "t")
    lake_io.overwrite(uri, pl.DataFrame({"k": [1]}), input_fingerprint="bronze@v1")
    counts = {"table": "t", "rows_in": 2, "rows_out": 2, "quarantined": 0, "merged_duplicates": 0}
    lake_io.overwrite(uri, pl.DataFrame({"k": [1, 2]}), input_fingerprint="bronze@v2", metadata={"logistics.counts": counts})
    result = maintain_table(TableRef("silver", "t", uri), MaintenanceSettings(retention_hours=0, enforce_retention_duration=False))
    assert result.vacuumed == 1 and result.version_after > result.version_before
    assert lake_io.recorded_input(uri) == "bronze@v2"
    assert recorded_counts(DeltaStore(Lake(str(tmp_path))), "t").rows_out == 2


@pytest.mark.usefixtures("prefect_server")
def test_overwritten_tables_are_skipped_while_a_run_holds_the_lake_lock(tmp_path):
    from logistics_pipeline.flows.maintenance import lake_maintenance
    from logistics_pipeline.tasks.orchestration.lock import lake_lock

    lake = tmp_path / "lake"
    stream_table(lake, batch=200)
    lake_io.overwrite(str(lake / "silver" / "small"), pl.DataFrame({"k": [1]}), input_fingerprint="x")
    held, release = threading.Event(), threading.Event()

    def running_pipeline() -> None:  # another thread: a run of this process would re-enter the lock
        with lake_lock(str(lake), timeout_s=0):
            held.set()
            release.wait(60)

    thread = threading.Thread(target=running_pipeline)
    thread.start()
    try:
        assert held.wait(10)
        rows = {row["table"]: row for row in lake_maintenance(lake=str(lake))}
    finally:
        release.set()
        thread.join()
    assert rows["bronze/kafka_orders"]["files_after"] == 1, "the append-only table is maintained anyway"
    assert rows["silver/small"]["notes"].startswith("skipped: the lake lock is held by pid")
