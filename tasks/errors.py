"""Errors a person can act on, and keeping their tracebacks out of the console.

A ``PipelineError`` says what is wrong with an input or a setting in one line; its
traceback would only point into library code, so the console shows the line alone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


class PipelineError(Exception):
    """A failure caused by input or configuration, not by a bug: the message is the fix."""


class LibraryError(PipelineError):
    """A library's error, with the table or file it concerns first (see ``concerning``)."""


def one_line(message: object) -> str:
    """A message (an error, say) on one line: newlines and runs of spaces become one space."""
    return " ".join(str(message).split())


def first_line(error: BaseException) -> str:
    """The first line of an error whose message goes on with a backtrace (delta-rs, Spark)."""
    lines = str(error).strip().splitlines()
    return one_line(lines[0]) if lines else type(error).__name__


@contextmanager
def concerning(subject: str) -> Iterator[None]:
    """Name what a library's error is about: ``bronze crm_sales_details: Failed to parse
    parquet: ... No space left on device``, not the library's words alone. A PipelineError
    already names it and passes as it is; the library's error stays the cause, so its
    traceback is still in the run's log (not on the console)."""
    try:
        yield
    except PipelineError:
        raise
    except BaseException as error:
        if not is_error(error):
            raise
        raise LibraryError(f"{subject}: {first_line(error)}") from error


def is_error(error: BaseException) -> bool:
    """An Exception, or a Rust library's panic (polars, delta-rs on a damaged file): pyo3
    raises those as ``PanicException``, a BaseException like KeyboardInterrupt."""
    return isinstance(error, Exception) or type(error).__name__ == "PanicException"


ERROR_WITHOUT_TRACEBACK = "pipeline_error"
"""The log record's attribute holding the error whose traceback was dropped."""


class _DropUserErrorTracebacks(logging.Filter):
    """Drops the traceback of a PipelineError; with ``keep_causes``, not of a library error
    wrapped in one (``concerning``), whose traceback is worth having in the run's log."""

    def __init__(self, keep_causes: bool):
        super().__init__()
        self.keep_causes = keep_causes

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, PipelineError) and not (self.keep_causes and error.__cause__ is not None):
            record.exc_info = None
            record.exc_text = None
            setattr(record, ERROR_WITHOUT_TRACEBACK, error)  # other handlers see the same record
        return True


def quiet_pipeline_error_tracebacks() -> None:
    """Log PipelineErrors as their message only, on every handler Prefect configured: the
    console (a terminal or a file) never shows their tracebacks, the run's log in the UI
    keeps those of wrapped library errors."""
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in list(logging.root.manager.loggerDict))]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if not any(isinstance(f, _DropUserErrorTracebacks) for f in handler.filters):
                handler.addFilter(_DropUserErrorTracebacks(keep_causes=not isinstance(handler, logging.StreamHandler)))
