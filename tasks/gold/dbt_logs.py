"""dbt's lines in the run's log: once each, under the name of the task of the dbt node they
are about, without colour codes.

PrefectDbtRunner logs a node's events (``1 of 43 START sql table model main.dim_customers``)
with the node's task run id but no task run name, so the console printed each as
``Task run None - ...``. The runner hands each event's message to ``get_dbt_event_msg``;
here that message carries the node's task name (as the runner names the node's task:
``model dim_customers``), which a filter on Prefect's task run logger puts on the record.
Colours are dbt's own (``--no-use-colors``, see ``tasks.gold.dbt.invoke``).

The same runner hands dbt the project's manifest, parsed once for every lake
(``tasks.gold.parsed_project``), which PrefectDbtRunner takes but does not pass on.

Imported only where dbt runs: prefect_dbt takes seconds to import.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import prefect_dbt.core.runner as prefect_dbt_runner
from prefect_dbt import PrefectDbtRunner

TASK_RUN_LOGGER = "prefect.task_runs"


class DbtLine(str):
    """A dbt event's message that knows the task name of the node it is about."""

    task_run_name: str | None = None


def node_task_name(event: Any) -> str | None:
    """``<resource type> <name>`` of the event's dbt node, as PrefectDbtRunner names its task
    (a hook or a test, which have no task, as ``hook <name>`` and ``test <name>``)."""
    node = getattr(event.data, "node_info", None)
    if node is None or not node.unique_id:
        return None
    kind = node.resource_type.lower()
    return f"{'hook' if kind == 'operation' else kind} {node.node_name or node.unique_id}"


TASK_NODE_TYPES = frozenset({"model", "seed", "snapshot"})
"""The dbt nodes that become Prefect tasks (and assets): what dbt builds. A data or unit test is
one quick query; as a task it cost about 0.25 CPU-s of Prefect bookkeeping, two thirds of a small
run's CPU time. Tests still run, log under their name, and fail the build; ``tasks.gold.dbt``
reports each failed one and the flow publishes the results as the ``gold-tests`` artifact."""


class NamedDbtRunner(PrefectDbtRunner):
    """PrefectDbtRunner whose node lines name their task on the console, whose tasks are the
    nodes that build something (``TASK_NODE_TYPES``), and whose dbt runs on the manifest it was
    given instead of parsing the project again."""

    def invoke(self, args: list[str], **kwargs: Any) -> Any:
        # PrefectDbtRunner reads its ``manifest`` but does not hand it to the dbtRunner it
        # creates, which then parses the project: give it, for this call (dbt runs one command
        # at a time per process). dbtRunner(manifest=...) is dbt's way to skip the parse.
        if self._manifest is None:
            return super().invoke(args, **kwargs)
        created_by_prefect_dbt = prefect_dbt_runner.dbtRunner
        prefect_dbt_runner.dbtRunner = functools.partial(created_by_prefect_dbt, manifest=self._manifest)
        try:
            return super().invoke(args, **kwargs)
        finally:
            prefect_dbt_runner.dbtRunner = created_by_prefect_dbt

    def _call_task(self, task_state: Any, manifest_node: Any, context: dict[str, Any], enable_assets: bool) -> None:
        if str(getattr(manifest_node.resource_type, "value", manifest_node.resource_type)) in TASK_NODE_TYPES:
            super()._call_task(task_state, manifest_node, context, enable_assets)

    @staticmethod
    def get_dbt_event_msg(event: Any) -> str:
        line = DbtLine(PrefectDbtRunner.get_dbt_event_msg(event))
        line.task_run_name = node_task_name(event)
        return line


class _TaskNameFromDbtLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "task_run_name", "") is None and isinstance(record.msg, DbtLine):
            record.task_run_name = record.msg.task_run_name
        return True


def name_dbt_lines() -> None:
    """Install the filter that names dbt's node lines (once per process)."""
    logger = logging.getLogger(TASK_RUN_LOGGER)
    if not any(isinstance(f, _TaskNameFromDbtLine) for f in logger.filters):
        logger.addFilter(_TaskNameFromDbtLine())
