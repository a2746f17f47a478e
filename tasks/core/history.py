"""Every version of a silver table's rows (slowly changing dimension, type 2), kept in the
lake's ``history`` layer so that it survives whatever happens to gold.

A row of a history table is one version of one key: the silver columns (``_ingested_at``
aside), and

- ``valid_from``: the time of the silver run that first saw this version. One instant per
  run, shared by every table the run changes: the files of one export are loaded into bronze
  moments apart, and a customer whose CRM row and ERP rows change together must change once,
  not pass through a version that mixes old and new rows;
- ``valid_to``: the time of the silver run that saw the row changed or dropped (exclusive);
  null while current;
- ``is_current``: ``valid_to`` is null;
- ``is_deleted``: the version was closed because the key left the export (it is closed, never
  removed; a key that comes back opens a new version).

``merge_history`` is pure (narwhals, any engine): the previous history and the silver table
now give the next history. A version that would be valid for no time at all (the table merged
twice at one instant) is not kept: the new version replaces it. Versions start when the
pipeline first saw them; gold's history models let a member's first version reach back to the
beginning of time, so that older orders find it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import narwhals as nw

VALID_FROM, VALID_TO, IS_CURRENT, IS_DELETED = "valid_from", "valid_to", "is_current", "is_deleted"
HISTORY_COLUMNS = (VALID_FROM, VALID_TO, IS_CURRENT, IS_DELETED)
INGESTED_AT = "_ingested_at"
_ROW = "_history_row"
_NULL, _SEPARATOR = "\u0000", "\u001f"


def merge_history(previous: nw.LazyFrame | None, silver: nw.LazyFrame, keys: Sequence[str], at: datetime) -> nw.LazyFrame:
    """The history after the silver run at ``at`` (UTC) built ``silver``:
    unchanged current versions stay open; changed ones are closed at ``at`` and their new
    version opened; keys the export dropped are closed and marked deleted; new keys opened.
    Closed versions are never touched."""
    schema = silver.collect_schema()
    attributes = [name for name in schema.names() if name != INGESTED_AT]
    moment = schema[INGESTED_AT]
    start, no_end = nw.lit(at, dtype=moment), nw.lit(None, dtype=moment)
    now = silver.select(*attributes).with_columns(_fingerprint(attributes))
    if previous is None:
        return _versions(now, attributes, start, no_end, current=True, deleted=False)
    kept = previous.collect_schema()
    dropped = [name for name in kept.names() if name not in attributes and name not in HISTORY_COLUMNS]  # columns silver lost
    columns = [*attributes, *dropped, *HISTORY_COLUMNS]
    previous = _with_columns(previous, schema, attributes)
    open_ = previous.filter(nw.col(IS_CURRENT)).with_columns(_fingerprint(attributes))
    rows_now, keys_now = now.select(_ROW), now.select(*keys)
    ended = open_.join(rows_now, on=_ROW, how="anti")
    new = now.join(open_.select(_ROW), on=_ROW, how="anti")
    parts = [
        previous.filter(~nw.col(IS_CURRENT)),
        open_.join(rows_now, on=_ROW, how="semi"),
        _closed(ended.join(keys_now, on=list(keys), how="semi"), start, deleted=False),
        _closed(ended.join(keys_now, on=list(keys), how="anti"), start, deleted=True),
        _with_columns(_versions(new, attributes, start, no_end, current=True, deleted=False), kept, dropped),
    ]
    merged = nw.concat([part.select(columns) for part in parts], how="vertical")
    return merged.filter(nw.col(VALID_TO).is_null() | (nw.col(VALID_TO) > nw.col(VALID_FROM)))


def _fingerprint(attributes: Sequence[str]) -> nw.Expr:
    """The row's values as one text (nulls marked), to tell a changed row from an unchanged one."""
    return nw.concat_str([nw.col(name).cast(nw.String()).fill_null(_NULL) for name in attributes], separator=_SEPARATOR).alias(_ROW)


def _versions(frame: nw.LazyFrame, attributes: Sequence[str], valid_from: nw.Expr, valid_to: nw.Expr, *, current: bool, deleted: bool) -> nw.LazyFrame:
    return frame.select(
        *attributes,
        valid_from.alias(VALID_FROM),
        valid_to.alias(VALID_TO),
        nw.lit(current).alias(IS_CURRENT),
        nw.lit(deleted).alias(IS_DELETED),
    )


def _closed(versions: nw.LazyFrame, end: nw.Expr, *, deleted: bool) -> nw.LazyFrame:
    return versions.with_columns(end.alias(VALID_TO), nw.lit(False).alias(IS_CURRENT), nw.lit(deleted).alias(IS_DELETED))


def _with_columns(frame: nw.LazyFrame, schema: nw.Schema, names: Sequence[str]) -> nw.LazyFrame:
    """``frame`` with every column of ``names`` it lacks, as nulls of ``schema``'s type: a
    column silver gained is null in older versions, one it lost is null in newer ones."""
    have = frame.collect_schema()
    missing = [name for name in names if name not in have]
    return frame.with_columns(*(nw.lit(None, dtype=schema[name]).alias(name) for name in missing)) if missing else frame
