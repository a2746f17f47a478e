"""What a command is given, checked before any Prefect server or flow starts.

A wrong folder or option value costs well under a second and one line that names it, not
the seconds a temporary Prefect server takes to start, then a traceback. Only what the
local machine can tell at once is checked here (folders, option values, the dbt target);
what needs a broker, a workspace or the files' contents is checked by the flows.

Nothing here imports Prefect, dbt or delta-rs: they take seconds to import.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from logistics_pipeline.tasks.databricks.settings import DatabricksSettings
from logistics_pipeline.tasks.errors import PipelineError, one_line
from logistics_pipeline.tasks.settings import DBT_PROJECT_DIR, MaintenanceSettings, Settings, load_settings

UNUSABLE_IN_LAKE_PATHS = "[]^|\\"
"""delta-rs cannot open a table under a path holding one of these (it panics, or reads the
backslash as a separator); every other character works, spaces, ``#``, ``?``, ``%`` and
non-ASCII letters included."""

_SECRET_WORDS = ("password", "secret", "token")
_SETTINGS_MODELS: tuple[type[BaseModel], ...] = (Settings, MaintenanceSettings, DatabricksSettings)


class InputError(PipelineError):
    """A wrong option or setting, found before anything started: a usage error (exit 2)."""


def checked_settings(*, uses_source: bool = False, uses_lake: bool = True, uses_dbt: bool = False, **overrides: Any) -> Settings:
    """The settings for a command (``overrides`` as for ``load_settings``), with the inputs
    it uses checked: the source folder (local engine only), a local lake folder, the dbt
    target. Raises ``InputError`` naming the first problem."""
    try:
        settings = load_settings(**overrides)
    except ValidationError as error:
        raise InputError(describe_invalid_setting(error)) from None
    if uses_lake and settings.is_local_lake:
        check_lake(settings.lake)
    if uses_source and settings.engine == "local":
        check_source_dir(settings.source_dir)
    if uses_dbt:
        check_dbt_target(settings.dbt_target)
    return settings


def check_lake(lake: str) -> None:
    """A local lake is a folder, or can be created as one, under a path delta-rs can open."""
    unusable = sorted({char for char in lake if char in UNUSABLE_IN_LAKE_PATHS})
    if unusable:
        shown = " ".join(repr(char) for char in unusable)
        raise InputError(f"lake {lake}: delta-rs cannot open a table under a path holding {shown}; choose another folder")
    path = Path(lake)
    if path.exists() and not path.is_dir():
        raise InputError(f"lake {lake} is a file, not a folder")
    existing = next(folder for folder in (path, *path.parents) if folder.exists())
    if not existing.is_dir():
        raise InputError(f"lake {lake} cannot be created: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"lake {lake} cannot be written: {existing} is not writable")


def check_source_dir(source_dir: Path) -> None:
    """The source folder exists (each file in it is checked by bronze, before anything is written)."""
    if not source_dir.exists():
        raise InputError(f"source folder {source_dir} does not exist")
    if not source_dir.is_dir():
        raise InputError(f"source folder {source_dir} is a file, not a folder")


def dbt_targets() -> list[str]:
    """The targets dbt_gold/profiles.yml defines."""
    profiles = yaml.safe_load((DBT_PROJECT_DIR / "profiles.yml").read_text())
    return list(profiles["dbt_gold"]["outputs"])


def check_dbt_target(target: str) -> None:
    targets = dbt_targets()
    if target not in targets:
        raise InputError(f"dbt target {target!r} is not in {DBT_PROJECT_DIR / 'profiles.yml'} (targets: {', '.join(targets)})")


def describe_invalid_setting(error: ValidationError) -> str:
    """A settings validation error in one line that names the setting as a person sets it
    (``LOGISTICS_ENGINE``), with what it got; no pydantic link."""
    model = next((m for m in _SETTINGS_MODELS if m.__name__ == error.title), None)
    prefix = (model.model_config.get("env_prefix") or "") if model is not None else ""
    problems = []
    for detail in error.errors(include_url=False):
        field = ".".join(str(part) for part in detail["loc"])
        name = f"{prefix}{field}".upper() if field and "." not in field else field or error.title
        shown = "a hidden value" if any(word in field.lower() for word in _SECRET_WORDS) else repr(detail.get("input"))
        problems.append(f"{name}: {one_line(detail['msg']).removeprefix('Value error, ')} (got {shown})")
    return "invalid setting " + "; ".join(problems)
