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
"""

from __future__ import annotations

import os
import sys

STARTUP_TIMEOUT_SECONDS = 120.0
"""How long a command waits for its temporary server, unless PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS says otherwise."""


def start_temporary_server() -> None:
    """Without ``PREFECT_API_URL``, start the temporary server now, the one Prefect's clients then
    use (one per process), waiting for it as long as ``STARTUP_TIMEOUT_SECONDS``."""
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return  # a real server
    from prefect.server.api.server import SubprocessASGIServer

    chosen = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in os.environ
    SubprocessASGIServer().start(timeout=None if chosen else STARTUP_TIMEOUT_SECONDS)


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
