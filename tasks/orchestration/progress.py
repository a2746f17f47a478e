"""Progress of long work where a person looks for it: a Prefect progress artifact on the run's
page (`produce-messages` has had one from the start; bronze, silver and gold report the same
way), and, when stdout is a terminal, one line rewritten in place (none when piped, so a log
file holds no control characters).

A log line printed while the progress line shows would be glued to it; a filter on the
console's log handlers clears the line first, and the next update draws it again.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from types import TracebackType
from uuid import UUID

from prefect import get_client
from prefect.artifacts import update_progress_artifact
from prefect.client.schemas.actions import ArtifactCreate
from prefect.utilities.context import get_task_and_flow_run_ids

ARTIFACT_EVERY_S = 1.0
"""At most one artifact call (an API call) per second, besides the last one."""
LINE_EVERY_S = 0.1


class _Terminal:
    """The one progress line on the terminal, shared by every Progress (they may run in threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.shown = False
        self.filtered: set[int] = set()

    @staticmethod
    def active() -> bool:
        return sys.stdout.isatty()

    def show(self, text: str) -> None:
        with self.lock:
            sys.stdout.write(f"\r\x1b[K{text}")
            sys.stdout.flush()
            self.shown = True

    def clear(self) -> None:
        with self.lock:
            if self.shown:
                sys.stdout.write("\r\x1b[K")
                sys.stdout.flush()
                self.shown = False

    def clear_before_logs(self) -> None:
        """Clear the line before any console log record is written (once per handler)."""
        for logger in (logging.getLogger(), logging.getLogger("prefect")):
            for handler in logger.handlers:
                if isinstance(handler, logging.StreamHandler) and id(handler) not in self.filtered:
                    handler.addFilter(_ClearProgressLine())
                    self.filtered.add(id(handler))


TERMINAL = _Terminal()


class _ClearProgressLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        TERMINAL.clear()
        return True


class Progress:
    """``done`` of ``total`` units of some work, as a progress artifact (key ``key``) and a
    terminal line ``what: done of total unit (n%) note``. Use it as a context manager: on
    leaving, the artifact shows where the work got to (100% when it finished) and the terminal
    line is cleared."""

    def __init__(self, key: str, what: str, unit: str, total: float | None = None, description: str | None = None):
        self.what, self.unit, self.total = what, unit, total
        self.done = 0.0
        self.note = ""
        self.finished = False
        self._lock = threading.Lock()
        self._key, self._description = key, description or f"{what}: {unit} done"
        # The run the artifact belongs to, taken here: reports may come from threads where no
        # run is current (dbt's, as gold's models finish).
        self._run_ids = get_task_and_flow_run_ids()
        self._artifact: UUID | None = None
        self._artifact_percent = 0.0
        # The artifact is created at the first report a second in, or at the end: work that
        # is over sooner (every layer of a run that finds nothing new) costs one API call, not three.
        self._artifact_at = time.monotonic()
        self._line_at = 0.0
        if TERMINAL.active():
            TERMINAL.clear_before_logs()

    @property
    def percent(self) -> float:
        if self.finished:
            return 100.0
        if not self.total:
            return 0.0
        return min(100.0, 100.0 * self.done / self.total)

    def advance(self, amount: float = 1, note: str | None = None) -> None:
        with self._lock:
            self.done += amount
            if note is not None:
                self.note = note
            self._report(final=False)

    def _report(self, final: bool) -> None:
        now = time.monotonic()
        percent = self.percent
        due = percent > self._artifact_percent and now - self._artifact_at >= ARTIFACT_EVERY_S
        if due or (final and (self._artifact is None or percent != self._artifact_percent)):
            if self._artifact is None:
                self._artifact = create_artifact_for_run(self._run_ids, self._key, self._description, percent)
            else:
                update_progress_artifact(self._artifact, percent)
            self._artifact_percent, self._artifact_at = percent, now
        if TERMINAL.active() and not final and (now - self._line_at >= LINE_EVERY_S or percent >= 100):
            self._line_at = now
            TERMINAL.show(self.line())

    def line(self) -> str:
        total = "?" if self.total is None else _amount(self.total)
        note = f" {self.note}" if self.note else ""
        return f"{self.what}: {_amount(self.done)} of {total} {self.unit} ({self.percent:.0f}%){note}"

    def close(self, finished: bool = True) -> None:
        """The work is over: the artifact shows 100% (or where it stopped), the terminal line goes."""
        with self._lock:
            self.finished = finished
            self._report(final=True)
        TERMINAL.clear()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close(finished=kind is None)


def create_artifact_for_run(run_ids: tuple[UUID | None, UUID | None], key: str, description: str, percent: float) -> UUID:
    """Prefect's ``create_progress_artifact`` for the given (task run, flow run) rather than the
    calling thread's."""
    task_run_id, flow_run_id = run_ids
    with get_client(sync_client=True) as client:
        artifact = client.create_artifact(
            ArtifactCreate(type="progress", key=key, description=description, data=percent, task_run_id=task_run_id, flow_run_id=flow_run_id)
        )
    return artifact.id


def _amount(value: float) -> str:
    """1,234,567 for counts; 12.3 for small amounts with a fraction (megabytes)."""
    return f"{value:,.1f}" if value < 1000 and value != int(value) else f"{value:,.0f}"
