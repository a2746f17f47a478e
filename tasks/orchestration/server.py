"""The temporary Prefect server a command starts when no ``PREFECT_API_URL`` is set.

Prefect starts it on first use and stops it at interpreter exit, so its "Stopping temporary
server" line comes after the command's last line, and a process killed by SIGTERM (which
skips exit handlers) leaves it running, orphaned (about 260 MB each). The command stops it
itself instead: once Prefect's log and event workers have delivered what they hold (a
server stopped under an open connection prints ``CancelledError`` tracebacks), before its
last line, on success, failure or interruption alike.
"""

from __future__ import annotations

import sys


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
