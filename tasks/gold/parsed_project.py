"""The gold dbt project parsed once per version of its files, not once per lake.

dbt parses its project before every command and saves the result (``partial_parse.msgpack``)
in the command's target folder, for the next command to start from. Each lake has its own
target folder, and dbt trusts a saved parse only when the command's vars and the profile's
connection values are the ones it was made with: both hold the lake (the var ``lake``, the file
gold is built in, the plugins' ``lake``). So every first run on a lake, every test and every
bench run parsed the project from nothing: 5.2 s of a 23.6 s run at scale 0.2.

What dbt parses names no lake: a source names its layer (its schema) and its table, and the
profile's plugins get the lake (models/sources.yml, profiles.yml). So ``parsed_manifest``
parses with the lake and the database file replaced by constants, in a cache shared by every
lake, and the command runs on the manifest it returns (``NamedDbtRunner``'s ``manifest``)
instead of parsing. The saved parse is still dbt's own, checked by dbt's own rules: a changed
model, macro, YAML file, var, env var or profile value is parsed again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from logistics_pipeline.tasks.settings import DBT_PROJECT_DIR

if TYPE_CHECKING:
    from dbt.contracts.graph.manifest import Manifest

PARSE_LAKE = "lake-of-each-command"
"""The lake's var while parsing: a constant, so that a parse holds for every lake."""

SAVED_PARSE = "partial_parse.msgpack"
logger = logging.getLogger(__name__)


def parse_cache_root() -> Path:
    """``$XDG_CACHE_HOME/logistics-pipeline/dbt-parse`` (``~/.cache`` without it)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "logistics-pipeline" / "dbt-parse"


def parse_slot(target: str, variables: dict[str, object]) -> Path:
    """One saved parse per target and vars: two kinds of run do not keep replacing each other's."""
    key = hashlib.sha256(json.dumps([target, variables], sort_keys=True).encode()).hexdigest()[:16]
    return parse_cache_root() / f"{target}-{key}"


def parsed_manifest(target: str, variables: dict[str, object], profile: str) -> Manifest | None:
    """The project parsed for ``target`` with ``variables`` (the lake replaced by ``PARSE_LAKE``)
    and ``profile`` (a profiles.yml that names no lake either), from the saved parse when dbt finds
    it current.

    ``None`` when the cache cannot be written or the parse failed: the command then parses the
    project itself, and reports what is wrong with it as it always did."""
    from dbt.cli.main import dbtRunner

    variables = {**variables, "lake": PARSE_LAKE}
    slot = parse_slot(target, variables)
    try:
        slot.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="parse-", dir=slot))
    except OSError as error:
        logger.debug("no saved dbt parse (%s): each command parses the project", error)
        return None
    try:
        # A private target folder: dbt writes its saved parse in place, and two processes parse at once.
        target_path = scratch / "target"
        target_path.mkdir()
        (scratch / "profiles.yml").write_text(profile)
        if (slot / SAVED_PARSE).is_file():
            shutil.copyfile(slot / SAVED_PARSE, target_path / SAVED_PARSE)
        result = dbtRunner().invoke([
            "parse",
            "--project-dir", str(DBT_PROJECT_DIR),
            "--profiles-dir", str(scratch),
            "--target", target,
            "--target-path", str(target_path),
            "--log-path", str(scratch / "logs"),
            "--log-level", "none",
            "--no-write-json",
            "--vars", json.dumps(variables),
        ])
        if not result.success or result.result is None:
            return None
        os.replace(target_path / SAVED_PARSE, slot / SAVED_PARSE)  # whole, for the next parse here or elsewhere
        return result.result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
