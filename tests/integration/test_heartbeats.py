"""Flow runs still send heartbeats (how Prefect finds a crashed run) now that they end without
joining the heartbeat thread (``tasks/orchestration/heartbeats.py``), and the thread stops."""

from __future__ import annotations

import threading
import time

import pytest

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_a_flow_run_sends_its_heartbeat_and_its_thread_stops_after_the_run():
    import logistics_pipeline.flows  # noqa: F401 - what every entry point imports first
    from prefect import flow, flow_engine
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
    from prefect.events.worker import EventsWorker
    from prefect.runtime import flow_run

    assert getattr(flow_engine._send_heartbeats, "unjoined", False), "importing the flows installs the change"
    before = set(threading.enumerate())

    @flow
    def short() -> tuple[str, list[threading.Thread]]:
        # the heartbeat thread runs contextvars' Context.run, so Python names it "Thread-N (run)"
        return flow_run.id, [thread for thread in threading.enumerate() if thread not in before and thread.name.endswith("(run)")]

    run_id, started = short()
    deadline = time.monotonic() + 3  # the thread checks the stop event every second
    while any(thread.is_alive() for thread in started) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started and not any(thread.is_alive() for thread in started)

    EventsWorker.drain_all()
    heartbeats = EventFilter(event=EventNameFilter(name=["prefect.flow-run.heartbeat"]), resource=EventResourceFilter(id=[f"prefect.flow-run.{run_id}"]))
    with get_client(sync_client=True) as client:
        deadline = time.monotonic() + 30  # the server persists events in batches
        while not client.read_events(filter=heartbeats, limit=10).events and time.monotonic() < deadline:
            time.sleep(0.5)
        assert client.read_events(filter=heartbeats, limit=10).events, "the flow run sent its heartbeat"
