"""Where a step's log lines go: the Prefect run's logger inside a flow or task run (so they
show in the UI), else a plain module logger (a step called on its own, in a test or a script)."""

from __future__ import annotations

import logging

from prefect import get_run_logger
from prefect.exceptions import MissingContextError


def run_logger(name: str) -> logging.Logger | logging.LoggerAdapter:
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(name)
