"""The history merge (SCD type 2) on polars frames: versions open, close, and are never removed."""

from __future__ import annotations

from datetime import date, datetime, timezone

import narwhals as nw
import polars as pl

from logistics_pipeline.tasks.core.history import merge_history

T1, T2, T3 = (datetime(2026, month, 1, tzinfo=timezone.utc) for month in (1, 2, 3))
SCHEMA = {"cid": pl.String, "cntry": pl.String, "since": pl.Date, "_ingested_at": pl.Datetime("us", "UTC")}


def silver(*rows: tuple) -> nw.LazyFrame:
    """A silver table of (cid, cntry, since) rows, loaded at some time the history ignores."""
    frame = pl.DataFrame([(*row, datetime(2025, 12, 31, tzinfo=timezone.utc)) for row in rows], schema=SCHEMA, orient="row")
    return nw.from_native(frame.lazy())


def merge(previous: pl.DataFrame | None, current: nw.LazyFrame, at: datetime) -> pl.DataFrame:
    before = None if previous is None else nw.from_native(previous.lazy())
    return merge_history(before, current, ["cid"], at).collect().to_native().sort("cid", "valid_from")


def versions(history: pl.DataFrame) -> list[tuple]:
    return history.select("cid", "cntry", "valid_from", "valid_to", "is_current", "is_deleted").rows()


def test_the_first_load_opens_one_current_version_per_key_without_ingestion_time():
    history = merge(None, silver(("A", "DE", date(2020, 1, 1)), ("B", None, None)), T1)
    assert history.columns == ["cid", "cntry", "since", "valid_from", "valid_to", "is_current", "is_deleted"]
    assert versions(history) == [("A", "DE", T1, None, True, False), ("B", None, T1, None, True, False)]
    assert history.schema["valid_to"] == pl.Datetime("us", "UTC")


def test_a_changed_row_closes_its_version_and_opens_the_next_and_a_dropped_key_is_closed_not_removed():
    first = merge(None, silver(("A", "DE", None), ("B", "US", None), ("C", "FR", None)), T1)
    second = merge(first, silver(("A", "FR", None), ("B", "US", None), ("D", "IT", None)), T2)
    assert versions(second) == [
        ("A", "DE", T1, T2, False, False),
        ("A", "FR", T2, None, True, False),
        ("B", "US", T1, None, True, False),
        ("C", "FR", T1, T2, False, True),
        ("D", "IT", T2, None, True, False),
    ]


def test_an_unchanged_export_changes_nothing_and_nulls_compare_equal():
    first = merge(None, silver(("A", None, None), ("B", "US", date(2021, 3, 4))), T1)
    assert merge(first, silver(("A", None, None), ("B", "US", date(2021, 3, 4))), T2).equals(first)


def test_a_key_that_comes_back_opens_a_new_version_and_closed_versions_are_kept():
    history = merge(None, silver(("A", "DE", None)), T1)
    history = merge(history, silver(), T2)
    history = merge(history, silver(("A", "DE", None)), T3)
    assert versions(history) == [("A", "DE", T1, T2, False, True), ("A", "DE", T3, None, True, False)]


def test_a_version_replaced_at_the_instant_it_started_is_not_kept():
    history = merge(None, silver(("A", "DE", None)), T1)
    assert versions(merge(history, silver(("A", "FR", None)), T1)) == [("A", "FR", T1, None, True, False)]


def test_a_column_silver_gains_is_null_in_older_versions():
    history = merge(None, silver(("A", "DE", None)), T1).drop("since")  # history from before silver had `since`
    after = merge(history, silver(("A", "DE", date(2020, 1, 1))), T2)
    assert after.select("cid", "since", "valid_from", "is_current").rows() == [("A", None, T1, False), ("A", date(2020, 1, 1), T2, True)]
