"""A fake of the Databricks Jobs API 2.2, the one thing the tests may fake: a small stateful
HTTPS server on 127.0.0.1 in a thread, which the real databricks-sdk talks to over real HTTP.

It answers what the pipeline calls, in the shapes of databricks-sdk's ``service/jobs.py``
(request bodies are checked against its dataclasses; ``test_databricks_jobs`` checks the
answers round-trip through ``Run.from_dict``/``as_dict``):

* ``POST /api/2.2/jobs/runs/submit`` and ``POST /api/2.2/jobs/run-now``: an idempotency token
  seen before returns that token's run instead of a new one;
* ``GET /api/2.2/jobs/runs/get``: multi-task runs (``tasks[]`` with their own ``run_id``) whose
  state goes PENDING, RUNNING, then TERMINATED on successive polls, with ``run_page_url``;
* ``GET /api/2.2/jobs/runs/get-output``: a task run's ``logs`` (asked for the parent run of a
  multi-task run, it refuses, as the real API does);
* ``POST /api/2.2/jobs/runs/cancel``;
* OAuth M2M: ``/oidc/.well-known/oauth-authorization-server`` and ``/oidc/v1/token``.

Faults are queued per endpoint: ``429`` (with Retry-After), ``503``, ``drop`` (the request
is carried out, then the connection is closed without an answer: a lost response), and ``ok``
(answered as usual, to let a request through before the next fault).
HTTPS because the SDK only speaks https to a workspace: a throwaway certificate for 127.0.0.1,
which ``REQUESTS_CA_BUNDLE`` makes the SDK trust.
"""

from __future__ import annotations

import base64
import datetime
import inspect
import ipaddress
import itertools
import json
import ssl
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from databricks.sdk.clock import Clock
from databricks.sdk.service import jobs

API = "/api/2.2/jobs"
SUBMIT, RUN_NOW, GET, OUTPUT, CANCEL = (f"{API}/{name}" for name in ("runs/submit", "run-now", "runs/get", "runs/get-output", "runs/cancel"))
WORKSPACE_ID = "1234567890123456"


@dataclass
class Outcome:
    """How a run ends: its result state, message and what the task printed (``logs``)."""

    result: str = "SUCCESS"
    message: str = ""
    logs: str = ""
    hold: bool = False
    """Stays RUNNING until cancelled."""


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any] | None


@dataclass
class FakeRun:
    run_id: int
    job_id: int
    run_type: str
    run_name: str
    tasks: list[dict[str, Any]]
    """Task settings as submitted (or the job's), each with its own ``run_id``."""
    outcome: Outcome
    job_parameters: dict[str, str] | None = None
    polls: int = 0
    cancelled: bool = False
    start_time: int = field(default_factory=lambda: int(time.time() * 1000))


class InstantClock(Clock):
    """databricks-sdk's clock for its retry backoff, without the waiting: sleeps are recorded
    and move the clock on, so a retry that waits 7 s takes none."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return time.time() + self.offset

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.offset += seconds


def _parameters(method: Any) -> set[str]:
    return set(inspect.signature(method).parameters) - {"self"}


SUBMIT_FIELDS = _parameters(jobs.JobsAPI.submit)
RUN_NOW_FIELDS = _parameters(jobs.JobsAPI.run_now)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


class FakeDatabricks:
    """The fake workspace. ``host`` is ``127.0.0.1:<port>``; ``token`` (a PAT) and the OAuth
    client ``client_id``/``client_secret`` are what it accepts."""

    def __init__(self, token: str, client_id: str = "sp-client-id", client_secret: str = "sp-client-secret") -> None:
        self.token, self.client_id, self.client_secret = token, client_id, client_secret
        self.access_token = "oauth-access-token-from-the-fake"
        self._lock = threading.Lock()
        self._tmp = tempfile.TemporaryDirectory(prefix="fake-databricks-")
        self.ca_file, key_file = _self_signed_certificate(Path(self._tmp.name))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self  # type: ignore[attr-defined]
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_file, key_file)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        # serve_forever looks for shutdown() every poll_interval: 0.5 s by default, which every stop waited
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-databricks", daemon=True)
        self.reset()

    def reset(self) -> None:
        """Forget every run, job, fault and request (between tests)."""
        with self._lock:
            self.runs: dict[int, FakeRun] = {}
            self.task_runs: dict[int, tuple[FakeRun, dict[str, Any]]] = {}
            self.tokens: dict[str, int] = {}
            self.jobs: dict[int, list[str]] = {}
            """run-now's jobs: job id -> task keys."""
            self.outcomes: deque[Outcome] = deque()
            """How the next runs end (default: SUCCESS with empty logs)."""
            self.faults: dict[tuple[str, str], deque[str]] = {}
            self.requests: list[Request] = []
            self._ids = itertools.count(455644833, 1000)

    def __enter__(self) -> FakeDatabricks:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._tmp.cleanup()

    # --- what tests set up and read ----------------------------------------------------------

    def fail_next(self, method: str, path: str, *faults: str) -> None:
        """The next requests to the endpoint get these faults, in order: 429, 503, drop or ok."""
        self.faults.setdefault((method, path), deque()).extend(faults)

    def sent(self, method: str, path: str) -> list[Request]:
        return [r for r in self.requests if (r.method, r.path) == (method, path)]

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [r.body for r in self.sent("POST", path) if r.body is not None]

    def run_page_url(self, run: FakeRun) -> str:
        return f"https://{self.host}/?o={WORKSPACE_ID}#job/{run.job_id}/run/{run.run_id}"

    # --- the API -----------------------------------------------------------------------------

    def handle(self, request: Request) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._lock:
            self.requests.append(request)
            route = (request.method, request.path)
            if route == ("GET", "/oidc/.well-known/oauth-authorization-server"):
                base = f"https://{self.host}/oidc/v1"
                return 200, {"authorization_endpoint": f"{base}/authorize", "token_endpoint": f"{base}/token"}, {}
            if route == ("POST", "/oidc/v1/token"):
                return self._oauth_token(request)
            self._authorize(request)
            handlers = {("POST", SUBMIT): self._submit, ("POST", RUN_NOW): self._run_now, ("GET", GET): self._get,
                        ("GET", OUTPUT): self._output, ("POST", CANCEL): self._cancel}
            if route not in handlers:
                raise ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{request.method} {request.path}'")
            return 200, handlers[route](request), {}

    def next_fault(self, request: Request) -> str | None:
        with self._lock:
            queue = self.faults.get((request.method, request.path))
            return queue.popleft() if queue else None

    def _oauth_token(self, request: Request) -> tuple[int, dict[str, Any], dict[str, str]]:
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return 401, {"error": "invalid_client", "error_description": "Client authentication failed"}, {}
        return 200, {"access_token": self.access_token, "token_type": "Bearer", "expires_in": 3600, "scope": "all-apis"}, {}

    def _authorize(self, request: Request) -> None:
        if request.headers.get("authorization") not in (f"Bearer {self.token}", f"Bearer {self.access_token}"):
            raise ApiError(401, "UNAUTHENTICATED", "Invalid access token.")

    def _new_run(self, run_type: str, run_name: str, tasks: list[dict[str, Any]], token: str | None, **extra: Any) -> dict[str, Any]:
        if token is not None and token in self.tokens:
            return {"run_id": self.tokens[token]}
        run_id = next(self._ids)
        task_settings = [{**t, "run_id": run_id + 1 + i} for i, t in enumerate(tasks)]
        outcome = self.outcomes.popleft() if self.outcomes else Outcome()
        run = FakeRun(run_id, extra.pop("job_id", run_id - 7), run_type, run_name, task_settings, outcome, **extra)
        self.runs[run_id] = run
        for task_settings_ in task_settings:
            self.task_runs[task_settings_["run_id"]] = (run, task_settings_)
        if token is not None:
            self.tokens[token] = run_id
        return {"run_id": run_id}

    def _submit(self, request: Request) -> dict[str, Any]:
        body = request.body or {}
        _known(body, SUBMIT_FIELDS, "runs/submit")
        tasks = body.get("tasks") or []
        if not tasks:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "At least one task is required.")
        for task in tasks:
            _round_trips(task, jobs.SubmitTask, "task")
        keys = {e["environment_key"] for e in body.get("environments", [])}
        for environment in body.get("environments", []):
            _round_trips(environment, jobs.JobEnvironment, "environment")
        for task in tasks:
            if task.get("environment_key") and task["environment_key"] not in keys:
                raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Task {task['task_key']} references an unknown environment {task['environment_key']}.")
        return self._new_run("SUBMIT_RUN", body.get("run_name", "Untitled"), tasks, body.get("idempotency_token"))

    def _run_now(self, request: Request) -> dict[str, Any]:
        body = request.body or {}
        _known(body, RUN_NOW_FIELDS, "run-now")
        job_id = body.get("job_id")
        if job_id not in self.jobs:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Job {job_id} does not exist.")
        unknown = set(body.get("only") or ()) - set(self.jobs[job_id])
        if unknown:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Task keys {sorted(unknown)} are not in job {job_id}.")
        tasks = [{"task_key": key} for key in self.jobs[job_id] if key in (body.get("only") or self.jobs[job_id])]
        answer = self._new_run("JOB_RUN", f"job {job_id}", tasks, body.get("idempotency_token"), job_id=job_id, job_parameters=body.get("job_parameters"))
        return {**answer, "number_in_job": answer["run_id"]}

    def _run(self, request: Request) -> FakeRun:
        run_id = int(request.query.get("run_id", "0"))
        if run_id not in self.runs:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Run {run_id} does not exist.")
        return self.runs[run_id]

    def _get(self, request: Request) -> dict[str, Any]:
        run = self._run(request)
        run.polls += 1
        return self.run_json(run)

    def _output(self, request: Request) -> dict[str, Any]:
        return self.output_json(int(request.query.get("run_id", "0")))

    def output_json(self, run_id: int) -> dict[str, Any]:
        """The runs/get-output answer for a task run: its logs once it has ended."""
        if run_id in self.runs:
            raise ApiError(
                400, "INVALID_PARAMETER_VALUE",
                "Retrieving the output of runs with multiple tasks is not supported. Please retrieve the output of each individual task run instead.",
            )
        if run_id not in self.task_runs:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Run {run_id} does not exist.")
        run, task = self.task_runs[run_id]
        state, status = self._state_json(run)
        metadata = {  # the task run, in the shape of a run
            "job_id": run.job_id, "run_id": run_id, "job_run_id": run.run_id, "number_in_job": run_id,
            "original_attempt_run_id": run_id, "creator_user_name": "etl@example.com", "run_name": task["task_key"],
            "run_page_url": f"https://{self.host}/?o={WORKSPACE_ID}#job/{run.job_id}/run/{run_id}", "run_type": run.run_type,
            "state": state, "status": status, "attempt_number": 0, **self._times(run),
        }
        answer: dict[str, Any] = {"metadata": metadata}
        life_cycle, result, _ = self.state(run)
        if life_cycle == "TERMINATED":
            answer |= {"logs": run.outcome.logs, "logs_truncated": False}
            if result != "SUCCESS":
                answer["error"] = run.outcome.message or "Workload failed"
        return answer

    def _cancel(self, request: Request) -> dict[str, Any]:
        run_id = (request.body or {}).get("run_id")
        if run_id not in self.runs:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Run {run_id} does not exist.")
        self.runs[run_id].cancelled = True
        return {}

    # --- the runs/get answer ------------------------------------------------------------------

    @staticmethod
    def state(run: FakeRun) -> tuple[str, str | None, str]:
        """(life cycle, result, message) at this poll: PENDING, RUNNING, then the outcome."""
        if run.cancelled:
            return "TERMINATED", "CANCELED", "Run cancelled."
        if run.polls <= 1:
            return "PENDING", None, "Waiting for cluster"
        if run.polls == 2 or run.outcome.hold:
            return "RUNNING", None, "In run"
        return "TERMINATED", run.outcome.result, run.outcome.message

    def _state_json(self, run: FakeRun) -> tuple[dict[str, Any], dict[str, Any]]:
        life_cycle, result, message = self.state(run)
        state: dict[str, Any] = {"life_cycle_state": life_cycle, "state_message": message, "user_cancelled_or_timedout": run.cancelled}
        status: dict[str, Any] = {"state": life_cycle}
        if result is not None:
            state["result_state"] = result
            code = {"SUCCESS": "SUCCESS", "CANCELED": "USER_CANCELED"}.get(result, "RUN_EXECUTION_ERROR")
            kind = {"SUCCESS": "SUCCESS", "CANCELED": "SUCCESS"}.get(result, "CLIENT_ERROR")
            status["termination_details"] = {"code": code, "type": kind, "message": message}
        return state, status

    def _times(self, run: FakeRun) -> dict[str, int]:
        ended = self.state(run)[0] == "TERMINATED"
        return {"start_time": run.start_time, "end_time": run.start_time + 754_000 if ended else 0,
                "setup_duration": 0, "execution_duration": 0, "cleanup_duration": 0}

    def _task_json(self, run: FakeRun, task: dict[str, Any]) -> dict[str, Any]:
        state, status = self._state_json(run)
        url = f"https://{self.host}/?o={WORKSPACE_ID}#job/{run.job_id}/run/{task['run_id']}"
        return {**task, "state": state, "status": status, "attempt_number": 0, "run_page_url": url, **self._times(run)}

    def run_json(self, run: FakeRun) -> dict[str, Any]:
        state, status = self._state_json(run)
        answer = {
            "job_id": run.job_id,
            "run_id": run.run_id,
            "number_in_job": run.run_id,
            "original_attempt_run_id": run.run_id,
            "creator_user_name": "etl@example.com",
            "run_name": run.run_name,
            "run_page_url": self.run_page_url(run),
            "run_type": run.run_type,
            "trigger": "ONE_TIME",
            "state": state,
            "status": status,
            "tasks": [self._task_json(run, task) for task in run.tasks],
            "attempt_number": 0,
            **self._times(run),
        }
        if run.job_parameters is not None:
            answer["job_parameters"] = [{"name": k, "default": "", "value": v} for k, v in run.job_parameters.items()]
        return answer


def _known(body: dict[str, Any], fields: set[str], endpoint: str) -> None:
    unknown = set(body) - fields
    if unknown:
        raise ApiError(400, "INVALID_PARAMETER_VALUE", f"{endpoint}: unknown field(s) {sorted(unknown)}")


def _round_trips(value: dict[str, Any], shape: Any, what: str) -> None:
    """The SDK dataclass reads it and writes it back the same: no unknown or mistyped field."""
    again = shape.from_dict(value).as_dict()
    if again != value:
        raise ApiError(400, "INVALID_PARAMETER_VALUE", f"{what} is not a {shape.__name__}: sent {value}, understood {again}")


class _Handler(BaseHTTPRequestHandler):
    server_version = "fake-databricks"
    protocol_version = "HTTP/1.1"  # keep-alive, as the workspace: one TLS handshake per client
    disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart

    def _serve(self, method: str) -> None:
        fake: FakeDatabricks = self.server.fake  # type: ignore[attr-defined]
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        content_type = self.headers.get("Content-Type", "")
        body = json.loads(raw) if raw and "json" in content_type else None
        request = Request(method, url.path, {k: v[-1] for k, v in parse_qs(url.query).items()},
                          {k.lower(): v for k, v in self.headers.items()}, body)
        fault = fake.next_fault(request)
        if fault in ("429", "503"):
            code = {"429": "REQUEST_LIMIT_EXCEEDED", "503": "TEMPORARILY_UNAVAILABLE"}[fault]
            with fake._lock:
                fake.requests.append(request)
            self._answer(int(fault), {"error_code": code, "message": "Try again later."}, {"Retry-After": "7"} if fault == "429" else {})
            return
        try:
            status, answer, headers = fake.handle(request)
        except ApiError as error:
            status, answer, headers = error.status, {"error_code": error.code, "message": error.message}, error.headers
        if fault == "drop":  # carried out, never answered: the client sees the connection close
            self.close_connection = True
            return
        self._answer(status, answer, headers)

    def _answer(self, status: int, answer: dict[str, Any], headers: dict[str, str]) -> None:
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def log_message(self, *_args: Any) -> None:
        """Quiet: the tests read ``FakeDatabricks.requests``."""


def _self_signed_certificate(folder: Path) -> tuple[str, str]:
    """A throwaway certificate for 127.0.0.1 (an EC key: quick to make)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return str(cert_file), str(key_file)
