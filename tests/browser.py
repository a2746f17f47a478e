"""A real headless browser for tests: Debian's Chromium driven by its chromedriver through the
W3C WebDriver protocol (plain JSON over HTTP, with httpx), so no browser automation library is
needed. Name resolution is switched off, so a page that needs the internet shows it.

`make test` installs the two packages (`make browser-tools`); without them the tests that use
``browser`` are skipped, saying so.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "chromedriver"
ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # offline: any host but this machine fails
]


def missing() -> str | None:
    """Why there is no browser to test with, or None."""
    if not shutil.which(CHROMIUM):
        return f"{CHROMIUM} is not installed (apt-get install chromium chromium-driver, or make browser-tools)"
    if not shutil.which(CHROMEDRIVER):
        return "chromedriver is not installed (apt-get install chromium-driver, or make browser-tools)"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Browser:
    """One WebDriver session: open a URL, run a script in the page, wait for a script's answer."""

    def __init__(self, client: httpx.Client, session: str):
        self.client = client
        self.session = session

    def _call(self, method: str, path: str, body: dict | None = None) -> Any:
        response = self.client.request(method, f"/session/{self.session}{path}", json=body)
        value = response.json()["value"]
        if response.status_code != 200:
            raise RuntimeError(f"WebDriver {path}: {value.get('error')}: {value.get('message')}")
        return value

    def open(self, url: str) -> None:
        self._call("POST", "/url", {"url": url})

    def run(self, script: str, *args: Any) -> Any:
        """The value the script returns (its body, as WebDriver's execute/sync takes it)."""
        return self._call("POST", "/execute/sync", {"script": script, "args": list(args)})

    def wait_for(self, script: str, timeout: float = 60.0) -> Any:
        """Run the script until it returns something truthy; that value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.run(script)
            if value or time.monotonic() > deadline:
                return value
            time.sleep(0.25)


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium session, ended with its driver on the way out."""
    port = free_port()
    driver = subprocess.Popen([CHROMEDRIVER, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if client.get("/status").json()["value"]["ready"]:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("chromedriver did not start within 30 s")
                time.sleep(0.1)
            capabilities = {"browserName": "chrome", "goog:chromeOptions": {"binary": CHROMIUM, "args": ARGS}}
            session = client.post("/session", json={"capabilities": {"alwaysMatch": capabilities}}).json()["value"]
            if "sessionId" not in session:
                raise RuntimeError(f"chromedriver refused a session: {session.get('message')}")
            try:
                yield Browser(client, session["sessionId"])
            finally:
                client.delete(f"/session/{session['sessionId']}")
    finally:
        driver.terminate()
        driver.wait(timeout=30)
