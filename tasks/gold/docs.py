"""The dbt docs site of a lake's gold: every model, column and test, and the lineage from the
silver and quarantine sources to gold, as one folder a browser opens with no server and no
internet (``index.html`` holds dbt's manifest and catalog inline; ``manifest.json`` and
``catalog.json`` are next to it for tools).

`dbt docs generate` reads the catalog (tables, columns, types, row counts) from the database,
and opens it for writing. So it runs on a copy of the published ``gold.duckdb``: the published
file is never opened for writing and never locked against its readers. It does not compile
the models (``--no-compile``), which would load the sources into the copy: the site describes
the gold that was published, not the silver of now.
"""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from logistics_pipeline.tasks.errors import PipelineError, one_line
from logistics_pipeline.tasks.gold.dbt import dbt_vars, profiles_dir, release_duckdb_file
from logistics_pipeline.tasks.gold.lake_views import lake_views
from logistics_pipeline.tasks.gold.state import GOLD_FILE, published_path
from logistics_pipeline.tasks.settings import DBT_PROJECT_DIR, Settings

SITE_FILES = {"static_index.html": "index.html", "manifest.json": "manifest.json", "catalog.json": "catalog.json"}
"""What dbt writes to its target folder -> what the site folder holds."""
DEFAULT_PORT = 8080
"""`dbt docs serve`'s default."""


@dataclass(frozen=True)
class DocsSite:
    """Where the site is, and what it documents."""

    index: Path
    models: int
    sources: int
    data_tests: int


def default_site(settings: Settings) -> Path:
    return Path(settings.lake) / "docs"


def generate_docs(settings: Settings, out: Path | None = None) -> DocsSite:
    """Write the docs site of the lake's published gold to ``out`` (default ``<lake>/docs``)."""
    if not settings.is_local_lake:
        raise PipelineError(f"docs are built from a local lake's gold.duckdb; {settings.lake} is not a local folder")
    if settings.dbt_target != "local":
        raise PipelineError(f"docs are built for the local target (gold.duckdb), not {settings.dbt_target!r}")
    published = published_path(settings)
    if not published.is_file():
        raise PipelineError(f"no gold at {published}: build it first (logistics-pipeline run, or logistics-pipeline gold)")
    out = (out or default_site(settings)).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise PipelineError(f"--out {out} is a file, not a folder")

    # A scratch folder, not the lake: dbt-duckdb reads a database path as a URL (a lake path
    # holding '#' or '?' would be cut there), and nothing of it is kept but the site.
    with tempfile.TemporaryDirectory(prefix="logistics-docs-") as scratch:
        copy = Path(scratch) / GOLD_FILE  # the same file name as gold, so the database is `gold` as in the manifest
        shutil.copyfile(published, copy)
        target = Path(scratch) / "target"
        run_docs_generate(settings, copy, target)
        out.mkdir(parents=True, exist_ok=True)
        for written, name in SITE_FILES.items():
            shutil.copyfile(target / written, out / name)
    return describe(out)


def run_docs_generate(settings: Settings, gold_copy: Path, target: Path) -> None:
    """`dbt parse` (which writes the manifest that ``--no-compile`` does not), then `dbt docs
    generate --static`, in this process and quiet on the console; one line when either fails."""
    from dbt.cli.main import dbtRunner

    common = [
        "--project-dir", str(DBT_PROJECT_DIR),
        "--profiles-dir", str(profiles_dir(settings, str(gold_copy))),
        "--target", "local",
        "--target-path", str(target),
        "--log-path", str(target.parent / "logs"),
        "--log-level", "none",
        "--vars", json.dumps(dbt_vars(settings)),
    ]
    with lake_views(str(gold_copy), settings.lake):  # the silver sources' columns and types, for the catalog
        for command in (["parse"], ["docs", "generate", "--static", "--no-compile"]):
            try:
                result = dbtRunner().invoke([*command, *common])
            finally:
                release_duckdb_file()
            errors = getattr(result.result, "errors", None) or []
            if not result.success or result.exception is not None or errors:
                problem = result.exception or "; ".join(errors) or f"see {target.parent / 'logs' / 'dbt.log'}"
                raise PipelineError(f"dbt {' '.join(command[:2])} failed: {one_line(problem)}")


def describe(out: Path) -> DocsSite:
    """What the site documents, from the manifest it holds."""
    manifest = json.loads((out / "manifest.json").read_text())
    nodes = manifest["nodes"].values()
    return DocsSite(
        index=out / "index.html",
        models=sum(node["resource_type"] == "model" for node in nodes),
        sources=len(manifest["sources"]),
        data_tests=sum(node["resource_type"] == "test" for node in nodes),
    )


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        """No line per request on the console."""


def docs_server(site: Path, port: int = DEFAULT_PORT, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """A plain HTTP server of the site folder (the caller runs ``serve_forever``). Not `dbt docs
    serve`: the site is static and complete, so serving the folder needs no dbt, project or
    profile, and serves exactly the folder that was generated, wherever the command runs."""
    try:
        return ThreadingHTTPServer((host, port), functools.partial(_QuietHandler, directory=str(site)))
    except OSError as error:
        raise PipelineError(f"cannot serve the docs on {host}:{port}: {error.strerror or error}") from None
