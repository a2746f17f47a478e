"""Where a step's log lines go: the Prefect run's logger inside a flow or task run (so they
show in the UI), else a plain module logger (a step called on its own, in a test or a script).

And what the console shows of them: each error once. Prefect logs a failure where it
happens, then again in every flow it fails in turn ("Encountered exception", "Finished in
state Failed(...)", twice per flow), so one bad file filled half a dozen ERROR lines."""

from __future__ import annotations

import logging
import re

from prefect import get_run_logger
from prefect.exceptions import MissingContextError

from logistics_pipeline.tasks.errors import ERROR_WITHOUT_TRACEBACK


def run_logger(name: str) -> logging.Logger | logging.LoggerAdapter:
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(name)


KEY_CHARS = 120
"""How much of an error (its type, then its first line) identifies it when it comes again:
``repr`` quotes it as ``Error('...')``, a state message as ``Error: ...``."""


def _key(text: str) -> str:
    """Letters and digits only, so that both ways of quoting an error match."""
    return re.sub(r"\W+", "", text)


class ErrorsOnce(logging.Filter):
    """Lets the first line about an error through (with its traceback, if any) and drops
    the later ones that repeat its message."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        message = _key(record.getMessage())
        if any(key in message for key in self.seen):
            return False
        error = record.exc_info[1] if record.exc_info else getattr(record, ERROR_WITHOUT_TRACEBACK, None)
        if error is not None:
            lines = str(error).strip().splitlines()
            self.seen.append(_key(type(error).__name__ + (lines[0] if lines else ""))[:KEY_CHARS])
        return True


def errors_once_on_console() -> None:
    """Show each error once on the console (a terminal or a file); the UI keeps every line."""
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in list(logging.root.manager.loggerDict))]
    once = ErrorsOnce()
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, logging.StreamHandler) and not any(isinstance(f, ErrorsOnce) for f in handler.filters):
                handler.filters.insert(0, once)  # before any filter that drops the traceback it reads the error from
