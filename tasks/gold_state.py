"""Whether the local gold is already built from the current silver, so a rerun can skip dbt.

Gold depends on the silver tables' Delta versions, on the dbt project's files and on the
target. After a successful `dbt build` the flow records those inputs, with the size and
modification time of gold.duckdb, in ``<lake>/_dbt/gold-inputs.json``. A later run skips
`dbt build` only when the inputs are the same and gold.duckdb is the file that build left:
an interrupted build, a deleted database or any write to it after the build means a rebuild.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tasks import lake
from tasks.settings import DBT_PROJECT_DIR, Settings

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


def gold_inputs(settings: Settings, silver_tables: list[str]) -> dict[str, object]:
    """What the gold build reads: the silver versions, the project and the target."""
    lake_ = lake.Lake(settings.lake)
    return {
        "silver": {name: lake.table_version(lake_.uri("silver", name)) for name in silver_tables},
        "dbt_project": project_digest(),
        "target": settings.dbt_target,
    }


def _record_path(settings: Settings) -> Path:
    return Path(settings.lake) / "_dbt" / RECORD


def _gold_file(settings: Settings) -> dict[str, int] | None:
    path = Path(lake.Lake(settings.lake).gold_path)
    if not path.is_file():
        return None
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def gold_is_current(settings: Settings, inputs: dict[str, object]) -> bool:
    """True when the last successful build read exactly ``inputs`` and left gold.duckdb as it is."""
    try:
        recorded = json.loads(_record_path(settings).read_text())
    except (OSError, ValueError):
        return False
    return recorded == {"inputs": inputs, "gold_file": _gold_file(settings)} and recorded["gold_file"] is not None


def record_gold_build(settings: Settings, inputs: dict[str, object]) -> None:
    """Remember what a successful build read (written atomically: a crash leaves the old record)."""
    path = _record_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps({"inputs": inputs, "gold_file": _gold_file(settings)}, sort_keys=True))
    partial.replace(path)
