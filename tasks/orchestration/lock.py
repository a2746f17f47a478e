"""The lake lock: one writer run at a time per local lake, for runs started directly.

Why a lock and not Delta's conflict detection: delta-rs appends never conflict with each
other, and the stream's exactly-once check (read the recorded offset, then append with the
new one) is two steps, so two bronze runs could both pass the check and both append the same
messages. Overwrites from two runs, or an overwrite racing a compaction, are not safe either
(delta-rs lets an overwrite commit after a concurrent OPTIMIZE and resurrects the compacted
rows). So every run that writes the lake holds this lock for its whole length.

How it works:
- An exclusive ``fcntl.flock`` on ``<lake>/_lock``. The kernel drops it when the holder exits
  for any reason (SIGKILL included), so a crashed run never leaves a stale lock behind.
- The holder writes who it is into the file (pid, host, flow run id and name, since when);
  a run that has to wait logs ``waiting for the lake lock held by pid N (flow run X)`` and
  tries again until ``LOGISTICS_LOCK_TIMEOUT_SECONDS`` (default 1800; 0 = do not wait) have
  passed, then fails with a one-line ``LakeLockTimeout`` naming the holder.
- Re-entrant per thread: the parent flow holds it and its sub-flows (which Prefect runs in
  the same thread) take it again without waiting. Another thread of the same process waits
  like another process would.
- Object-store lakes (``s3://...``) have no file to lock: the lock is a no-op there, and the
  deployment concurrency limit (prefect.yaml) is what serialises orchestrated runs.

The file descriptor is not inheritable, but a process that ``fork``s without ``exec`` while
holding the lock shares it with the child: the pipeline does not do that.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from logistics_pipeline.tasks.errors import PipelineError
from logistics_pipeline.tasks.orchestration.logs import run_logger
from logistics_pipeline.tasks.settings import load_settings

LOCK_FILE = "_lock"
TIMEOUT_ENV = "LOGISTICS_LOCK_TIMEOUT_SECONDS"
POLL_S = 0.25
REPEAT_WAITING_LOG_S = 60.0



class LakeLockTimeout(PipelineError):
    """Another run held the lake lock for longer than the timeout."""


@dataclass
class _LakeState:
    """This process's view of one lake's lock."""

    path: Path
    guard: threading.RLock = field(default_factory=threading.RLock)  # threads of this process
    depth: int = 0  # re-entries by the thread holding ``guard``
    fd: int | None = None  # the flock'ed file while depth > 0
    holder: dict[str, Any] | None = None


_STATES: dict[str, _LakeState] = {}
_REGISTRY = threading.Lock()


def lock_path(lake: str) -> Path:
    return Path(lake.removeprefix("file://")).expanduser().resolve() / LOCK_FILE


def is_lockable(lake: str) -> bool:
    """Only a local folder has a file to lock."""
    return "://" not in lake or lake.startswith("file://")


def _state(lake: str) -> _LakeState:
    path = lock_path(lake)
    with _REGISTRY:
        return _STATES.setdefault(str(path), _LakeState(path))


def _me() -> dict[str, Any]:
    """Who holds the lock: this process and, inside a flow run, that run."""
    holder: dict[str, Any] = {"pid": os.getpid(), "host": socket.gethostname(), "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    try:
        from prefect.context import FlowRunContext

        context = FlowRunContext.get()
        if context is not None and context.flow_run is not None:
            holder.update(flow_run_id=str(context.flow_run.id), flow_run_name=context.flow_run.name, flow=context.flow.name if context.flow else None)
    except Exception:  # noqa: BLE001 - the holder record is informative only
        pass
    return holder


def describe(holder: dict[str, Any] | None) -> str:
    """``pid N (flow run X)``, or what is known of the holder."""
    if not holder:
        return "another process (holder unknown)"
    text = f"pid {holder.get('pid', '?')}"
    if holder.get("host") and holder.get("host") != socket.gethostname():
        text += f" on {holder['host']}"
    if holder.get("flow_run_id"):
        name = f" '{holder['flow_run_name']}'" if holder.get("flow_run_name") else ""
        flow = f" of {holder['flow']}" if holder.get("flow") else ""
        text += f" (flow run {holder['flow_run_id']}{name}{flow})"
    if holder.get("since"):
        text += f", since {holder['since']}"
    return text


def read_holder(lake: str) -> dict[str, Any] | None:
    """The holder the lock file names (possibly a run that has ended), or None."""
    try:
        text = lock_path(lake).read_text()
    except OSError:
        return None
    return _parse(text)


def _parse(text: str) -> dict[str, Any] | None:
    try:
        holder = json.loads(text)
    except ValueError:  # empty (released) or being written
        return None
    return holder if isinstance(holder, dict) else None


def _read_fd(fd: int) -> dict[str, Any] | None:
    try:
        return _parse(os.pread(fd, 4096, 0).decode("utf-8", errors="replace"))
    except OSError:
        return None


def _write_fd(fd: int, holder: dict[str, Any] | None) -> None:
    data = b"" if holder is None else json.dumps(holder).encode()
    os.ftruncate(fd, 0)
    if data:
        os.pwrite(fd, data, 0)


class _Waiter:
    """Logs that a run waits (once, then every minute) and raises when the time is up."""

    def __init__(self, lake: str, timeout_s: float, logger: logging.Logger | logging.LoggerAdapter):
        self.lake, self.timeout_s, self.logger = lake, timeout_s, logger
        self.deadline = time.monotonic() + timeout_s
        self.last_log: float | None = None

    @property
    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def waiting(self, holder: dict[str, Any] | None) -> None:
        if self.remaining <= 0:
            raise LakeLockTimeout(
                f"the lake {self.lake} is locked by {describe(holder)} and was not released within {self.timeout_s:g}s; "
                f"wait for that run to finish (or raise {TIMEOUT_ENV}) and run again"
            )
        now = time.monotonic()
        if self.last_log is None or now - self.last_log >= REPEAT_WAITING_LOG_S:
            self.last_log = now
            self.logger.info(
                "waiting for the lake lock held by %s (up to %gs more; %s)", describe(holder), max(self.remaining, 0), lock_path(self.lake)
            )


@contextlib.contextmanager
def lake_lock(lake: str, timeout_s: float | None = None) -> Iterator[dict[str, Any] | None]:
    """Hold the lake's exclusive lock for the ``with`` block; yields the holder record
    (None for an object-store lake, which is not locked)."""
    logger = run_logger(__name__)
    if not is_lockable(lake):
        logger.debug("lake %s is not a local folder: no lake lock (rely on the deployment concurrency limit)", lake)
        yield None
        return
    timeout = load_settings().lock_timeout_seconds if timeout_s is None else timeout_s
    state = _state(lake)
    waiter = _Waiter(lake, timeout, logger)

    while not state.guard.acquire(timeout=max(0.0, min(1.0, waiter.remaining))):  # another thread of ours
        waiter.waiting(state.holder)
    try:
        if state.depth == 0:
            _acquire_file(state, waiter)
        state.depth += 1
        try:
            yield state.holder
        finally:
            state.depth -= 1
            if state.depth == 0:
                _release_file(state)
    finally:
        state.guard.release()


def _acquire_file(state: _LakeState, waiter: _Waiter) -> None:
    state.path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(state.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waiter.waiting(_read_fd(fd))
                time.sleep(max(0.0, min(POLL_S, waiter.remaining)))
        holder = _me()
        _write_fd(fd, holder)
    except BaseException:
        os.close(fd)  # also drops the flock if it was taken
        raise
    state.fd, state.holder = fd, holder
    if waiter.last_log is not None:
        waiter.logger.info("got the lake lock after waiting (%s)", state.path)


def _release_file(state: _LakeState) -> None:
    fd, state.fd, state.holder = state.fd, None, None
    if fd is None:
        return
    try:
        _write_fd(fd, None)
    except OSError:
        pass
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def holds_lake_lock(lake: str) -> bool:
    """True when this thread holds the lake's lock (for assertions and tests)."""
    if not is_lockable(lake):
        return False
    state = _state(lake)
    if not state.guard.acquire(blocking=False):
        return False
    try:
        return state.depth > 0
    finally:
        state.guard.release()
