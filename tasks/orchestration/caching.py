"""Prefect caching keyed on what a table is built from.

A task that writes a table takes ``target_uri`` and ``fingerprint`` (a file's content hash,
or the Delta version of its input) and is cached on both. The flow refreshes the cache when
the table does not record that fingerprint, so a deleted or rebuilt lake is never mistaken
for an up-to-date one.
"""

from __future__ import annotations

from typing import Any

from prefect.context import TaskRunContext

from logistics_pipeline.tasks.local import lake


def input_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    return f"{context.task.name}|{parameters['target_uri']}|{parameters['fingerprint']}"


def is_stale(target_uri: str, fingerprint: str) -> bool:
    """True when the table was not built from exactly this input."""
    return lake.recorded_input(target_uri) != fingerprint
