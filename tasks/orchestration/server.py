"""The temporary Prefect server a command starts when no ``PREFECT_API_URL`` is set.

The command starts it before its flow, and waits up to ``STARTUP_TIMEOUT_SECONDS`` for it:
the first start in a new ``PREFECT_HOME`` (a new user's first ``make run``) creates the
server's database, which took longer than Prefect's default 20 s on a busy 2-core machine,
and the run failed with "Timed out while attempting to connect to ephemeral Prefect API
server". Setting ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` in the command does not
help: Prefect reads its settings when it is imported, before the command runs.

Prefect starts it on first use and stops it at interpreter exit, so its "Stopping temporary
server" line comes after the command's last line, and a process killed by SIGTERM (which
skips exit handlers) leaves it running, orphaned (about 260 MB each). The command stops it
itself instead: once Prefect's log and event workers have delivered what they hold (a
server stopped under an open connection prints ``CancelledError`` tracebacks), before its
last line, on success, failure or interruption alike.

It is started with ``SQLITE_SERVER_SETTINGS`` unless the environment says otherwise.
"""

from __future__ import annotations

import os
import sys

SQLITE_SERVER_SETTINGS = {
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
}
"""How a Prefect server on SQLite (its default database) should record task runs for this
pipeline: up to 100 task-run events in one write, at least once a second, instead of one write
per event. A layer's tasks end in a burst of events; written one by one, they held SQLite's write
lock just as the parent flow created the next sub-flow's task run (``POST /task_runs/``), which
the server then answered 503, and Prefect's client retried it 2 s later: one or two such waits
in nearly every run. Measured at scale 0.2 against one server, 4 runs each way: 1-2 retries per
run and 6.7-9.5 s per unchanged rerun, against none and 4.8-5.7 s. A task run reaches the API
(and the UI) up to a second after its events. A server on PostgreSQL does not need them."""

STARTUP_TIMEOUT_SECONDS = 120.0
"""How long a command waits for its temporary server, unless PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS says otherwise."""


def start_temporary_server() -> None:
    """Without ``PREFECT_API_URL``, start the temporary server now, the one Prefect's clients then
    use (one per process), with ``SQLITE_SERVER_SETTINGS``, waiting for it as long as
    ``STARTUP_TIMEOUT_SECONDS``."""
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return  # a real server
    from prefect.server.api.server import SubprocessASGIServer

    default_to_sqlite_server_settings()
    chosen = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in os.environ
    SubprocessASGIServer().start(timeout=None if chosen else STARTUP_TIMEOUT_SECONDS)


def default_to_sqlite_server_settings() -> None:
    """``SQLITE_SERVER_SETTINGS`` in this process's environment, where it sets none of them
    itself, for every Prefect server it starts (a server process inherits the environment)."""
    for name, value in SQLITE_SERVER_SETTINGS.items():
        os.environ.setdefault(name, value)


def stop_temporary_server() -> None:
    """Stop the temporary server this process started, if it did."""
    if "prefect.server.api.server" not in sys.modules:
        return  # no temporary server was started
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return  # a real server: not ours to stop
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the one Prefect's clients started (a singleton)
    if not server.running:
        return
    APILogWorker.drain_all(timeout=10)
    EventsWorker.drain_all(timeout=10)
    server.stop()
