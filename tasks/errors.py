"""Errors a person can act on, and keeping their tracebacks out of the console.

A ``PipelineError`` says what is wrong with an input or a setting in one line; its
traceback would only point into library code, so the console shows the line alone.
"""

from __future__ import annotations

import logging


class PipelineError(Exception):
    """A failure caused by input or configuration, not by a bug: the message is the fix."""


def one_line(message: object) -> str:
    """A message (an error, say) on one line: newlines and runs of spaces become one space."""
    return " ".join(str(message).split())


def first_line(error: BaseException) -> str:
    """The first line of an error whose message goes on with a backtrace (delta-rs, Spark)."""
    lines = str(error).strip().splitlines()
    return one_line(lines[0]) if lines else type(error).__name__


class _DropUserErrorTracebacks(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], PipelineError):
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_pipeline_error_tracebacks() -> None:
    """Log PipelineErrors as their message only, on every handler Prefect configured."""
    quiet = _DropUserErrorTracebacks()
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in list(logging.root.manager.loggerDict))]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if quiet not in handler.filters and not any(isinstance(f, _DropUserErrorTracebacks) for f in handler.filters):
                handler.addFilter(quiet)
