"""Where the local gold lives while it is built, when it is published, and whether the
published gold is still the one built from the current silver (so a rerun can skip dbt).

Write, audit, publish: `dbt build` writes a new DuckDB file in ``<lake>/_dbt/staging/``
(never the published one), its tests are the audit, and only a build whose every test
passed replaces ``<lake>/gold.duckdb``, by an atomic rename. A failed build is kept in
``<lake>/_dbt/failed/`` for inspection; readers keep the last good gold, and the next run
builds again from silver.

After publishing, the flow records what the build read (the state of every silver table,
see ``lake.table_state``; the dbt project's files; the target and vars) together with the
SHA-256 and the row counts of the published file, in ``<lake>/_dbt/gold-inputs.json``. A
later run skips `dbt build` only when the inputs are the same and gold.duckdb is still that
file: it opens, holds the recorded tables with their row counts, and has the recorded hash.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import duckdb

from logistics_pipeline.tasks.gold.dbt import GOLD_FILE, GOLD_TABLES, dbt_vars, gold_row_counts, work_dir
from logistics_pipeline.tasks.local import lake
from logistics_pipeline.tasks.settings import DBT_PROJECT_DIR, Settings

RECORD = "gold-inputs.json"
PROJECT_PARTS = ("dbt_project.yml", "profiles.yml", "models", "macros", "tests")


def project_digest(project_dir: Path = DBT_PROJECT_DIR) -> str:
    """A hash of every file that defines the gold models and their tests."""
    digest = hashlib.sha256()
    for part in PROJECT_PARTS:
        root = project_dir / part
        for path in sorted([root] if root.is_file() else root.rglob("*")):
            if path.is_file():
                digest.update(str(path.relative_to(project_dir)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def gold_inputs(settings: Settings, silver_tables: list[str], history_tables: list[str]) -> dict[str, object]:
    """What the gold build reads: the state of each silver and history table, the project, the
    target and vars. Not the quality results: every silver run appends to them, and a run that
    changed nothing must not rebuild gold (``silver_quality`` is as of the last build)."""
    lake_ = lake.Lake(settings.lake)
    return {
        "silver": {name: lake.table_state(lake_.uri("silver", name)) for name in silver_tables},
        "history": {name: lake.table_state(lake_.uri("history", name)) for name in history_tables},
        "dbt_project": project_digest(),
        "target": settings.dbt_target,
        "vars": dbt_vars(settings),
    }


URL_CHARS = "#?"
"""DuckDB cannot write a database under a path holding ``?`` (it puts its write-ahead log at
``<path up to the ?>.wal?<rest>``), and dbt-duckdb names the database after what it reads of
the path as a URL, cut at ``#`` or ``?``. Under a lake whose path holds one, gold is built in
the temporary folder and copied in when published."""


def staging_path(settings: Settings) -> Path:
    """Where a build writes; the same file name as gold, so dbt-duckdb's database is `gold` too."""
    if any(char in settings.lake for char in URL_CHARS):
        lake_digest = hashlib.sha256(settings.lake.encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"logistics-gold-{lake_digest}" / "staging" / GOLD_FILE
    return work_dir(settings) / "staging" / GOLD_FILE


def failed_path(settings: Settings) -> Path:
    return work_dir(settings) / "failed" / GOLD_FILE


def published_path(settings: Settings) -> Path:
    return Path(lake.Lake(settings.lake).gold_path)


def start_build(settings: Settings) -> Path:
    """An empty staging file for a new build (what an interrupted build left is removed)."""
    path = staging_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    for leftover in (path, _wal(path)):
        leftover.unlink(missing_ok=True)
    return path


def _wal(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def keep_failed_build(settings: Settings) -> Path:
    """Move a build whose tests failed out of staging, for inspection; gold stays as it was."""
    failed = failed_path(settings)
    failed.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(staging_path(settings), failed)
    _wal(staging_path(settings)).unlink(missing_ok=True)
    return failed


def publish(settings: Settings) -> None:
    """Replace gold.duckdb with the staged build in one rename. The staged file is checkpointed
    first, so it is whole without its write-ahead log; a stale log of the old file is removed, as
    DuckDB would otherwise replay it onto the new one."""
    staged, published = staging_path(settings), published_path(settings)
    with duckdb.connect(str(staged)) as connection:
        connection.execute("checkpoint")
    _wal(published).unlink(missing_ok=True)
    try:
        os.replace(staged, published)
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
        partial = published.with_name(f".{published.name}.partial")  # staged on another file system
        shutil.copyfile(staged, partial)
        os.replace(partial, published)
        staged.unlink()


def _record_path(settings: Settings) -> Path:
    return work_dir(settings) / RECORD


def file_digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def published_gold(settings: Settings) -> dict[str, object] | None:
    """The published file's hash and row counts, or None when it is missing or does not open
    with every gold table."""
    path = published_path(settings)
    if not path.is_file():
        return None
    try:
        tables = gold_row_counts(str(path))
    except duckdb.Error:
        return None
    return {"sha256": file_digest(path), "tables": tables}


def why_rebuild(settings: Settings, inputs: dict[str, object]) -> str | None:
    """Why gold must be built again, or None when the published gold is exactly what the
    last successful build of these inputs published."""
    try:
        recorded = json.loads(_record_path(settings).read_text())
    except (OSError, ValueError):
        return "no earlier build is recorded"
    if recorded.get("inputs") != inputs:
        return "silver, the dbt project or its settings changed since the last build"
    current = published_gold(settings)
    if current is None:
        return f"{published_path(settings)} is missing, does not open, or lacks a gold table ({', '.join(GOLD_TABLES)})"
    if current != recorded.get("gold"):
        return f"{published_path(settings)} is not the file the last build published (its content or row counts changed)"
    return None


def record_gold_build(settings: Settings, inputs: dict[str, object]) -> None:
    """Remember what the published build read and what it published (written atomically)."""
    path = _record_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps({"inputs": inputs, "gold": published_gold(settings)}, sort_keys=True))
    partial.replace(path)
