"""What a person reads when something is wrong: the checks before a run, an error logged once,
a library's error with its table first."""

from __future__ import annotations

import logging
import os

import pytest
from pydantic import ValidationError

from logistics_pipeline.tasks.errors import ERROR_WITHOUT_TRACEBACK, LibraryError, PipelineError, concerning, is_error
from logistics_pipeline.tasks.orchestration.logs import ErrorsOnce
from logistics_pipeline.tasks.preflight import (
    InputError,
    check_dbt_target,
    check_lake,
    check_source_dir,
    checked_settings,
    describe_invalid_setting,
)
from logistics_pipeline.tasks.settings import Settings


def test_lake_checks(tmp_path):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    check_lake(str(tmp_path / "new" / "lake #?%é"))  # created later, any of these characters
    check_lake(str(tmp_path))
    with pytest.raises(InputError, match=f"^lake {a_file} is a file, not a folder$"):
        check_lake(str(a_file))
    with pytest.raises(InputError, match=f"^lake {a_file}/lake cannot be created: {a_file} is a file$"):
        check_lake(str(a_file / "lake"))
    for char in "[]^|\\":
        with pytest.raises(InputError, match="delta-rs cannot open a table under a path holding"):
            check_lake(str(tmp_path / f"a{char}b"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_lake_in_a_folder_that_cannot_be_written(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(InputError, match="is not writable"):
        check_lake(str(locked / "lake"))


def test_source_and_dbt_target_checks(tmp_path):
    check_source_dir(tmp_path)
    with pytest.raises(InputError, match=f"^source folder {tmp_path / 'no'} does not exist$"):
        check_source_dir(tmp_path / "no")
    check_dbt_target("local")
    with pytest.raises(InputError, match=r"^dbt target 'prod' is not in .*profiles\.yml \(targets: local, "):
        check_dbt_target("prod")


def test_only_the_inputs_a_command_uses_are_checked(tmp_path, monkeypatch):
    monkeypatch.delenv("LOGISTICS_ENGINE", raising=False)
    missing = tmp_path / "no-such-export"
    assert checked_settings(source_dir=missing, lake=str(tmp_path / "lake")).lake == str(tmp_path / "lake")
    with pytest.raises(InputError, match="source folder"):
        checked_settings(uses_source=True, source_dir=missing, lake=str(tmp_path / "lake"))
    # engine=databricks: the export is the workspace's, not a local folder
    checked_settings(uses_source=True, source_dir=missing, engine="databricks", lake=str(tmp_path / "lake"))


def test_an_invalid_setting_is_named_as_a_person_sets_it(monkeypatch):
    monkeypatch.setenv("LOGISTICS_ENGINE", "spark")
    with pytest.raises(InputError) as raised:
        checked_settings()
    assert str(raised.value) == "invalid setting LOGISTICS_ENGINE: Input should be 'local' or 'databricks' (got 'spark')"
    assert "pydantic" not in str(raised.value) and "\n" not in str(raised.value)


def test_a_secret_setting_is_never_shown():
    with pytest.raises(ValidationError) as raised:
        Settings(kafka_password=["s3cr3t"])
    message = describe_invalid_setting(raised.value)
    assert message.startswith("invalid setting LOGISTICS_KAFKA_PASSWORD: ") and message.endswith("(got a hidden value)")
    assert "s3cr3t" not in message


def test_a_library_error_is_named_after_what_it_concerns():
    with pytest.raises(LibraryError) as raised:
        with concerning("bronze crm_sales_details"):
            raise OSError(28, "No space left on device")
    assert str(raised.value) == "bronze crm_sales_details: [Errno 28] No space left on device"
    assert isinstance(raised.value.__cause__, OSError), "the library's error stays the cause"

    named = PipelineError("a file that names itself")
    with pytest.raises(PipelineError) as passed:
        with concerning("bronze x"):
            raise named
    assert passed.value is named

    with pytest.raises(KeyboardInterrupt):
        with concerning("bronze x"):
            raise KeyboardInterrupt


def test_a_rust_panic_is_an_error_not_an_interruption():
    PanicException = type("PanicException", (BaseException,), {})  # what pyo3 raises, by name
    assert is_error(PanicException("assertion failed")) and is_error(ValueError())
    assert not is_error(KeyboardInterrupt()) and not is_error(SystemExit())
    with pytest.raises(LibraryError, match="^silver t: assertion failed$"):
        with concerning("silver t"):
            raise PanicException("assertion failed\nstack backtrace: ...")


class SourceFileError(PipelineError):
    pass


def record(message: str, error: BaseException | None = None, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord("prefect.flow_runs", level, __file__, 1, message, (), (type(error), error, None) if error else None)


def test_an_error_is_shown_once_however_prefect_repeats_it():
    once = ErrorsOnce()
    error = SourceFileError("/data/export #1/cust_info.csv: header does not match the expected columns: missing cst_gndr (found 'x')\nmore")
    assert once.filter(record(f"Task run failed with exception: {error!r} - Retries are exhausted", error))
    repeats = [
        record(f"Finished in state Failed('Task run encountered an exception SourceFileError: {error}')"),
        record(f"Encountered exception during execution: {error!r}", error),
        record(f"Finished in state {('Flow run encountered an exception: SourceFileError: ' + str(error))!r}", level=logging.INFO),
    ]
    assert not any(once.filter(r) for r in repeats)
    assert once.filter(record("bronze crm_cust_info: 1850 rows", level=logging.INFO))
    assert once.filter(record("error for another reason", ValueError("x")))
    assert once.filter(record("a line that mentions x"))  # a short message does not swallow other lines


def test_an_error_whose_traceback_another_handler_dropped_is_still_recognised():
    once = ErrorsOnce()
    error = SourceFileError("cust_info.csv: file is empty")
    first = record(f"Task run failed with exception: {error!r}")
    setattr(first, ERROR_WITHOUT_TRACEBACK, error)  # what the traceback filter leaves on a shared record
    assert once.filter(first)
    assert not once.filter(record(f"Encountered exception during execution: {error!r}"))


def test_a_sigterm_prefect_failed_to_hand_on_still_stops_the_command():
    """A SIGTERM landing while Prefect creates a task run breaks Prefect's crash handling
    (``ValueError: Task run is not set``); the CLI still reports it as stopped (exit 143)."""
    import signal

    from prefect.exceptions import TerminationSignal

    from logistics_pipeline.flows.cli import _termination_signal_behind

    try:
        try:
            raise TerminationSignal(signal=signal.SIGTERM)
        except TerminationSignal:
            raise ValueError("Task run is not set")  # noqa: B904 - as Prefect raises it
    except ValueError as error:
        broken = error
    assert _termination_signal_behind(broken) == signal.SIGTERM
    assert _termination_signal_behind(RuntimeError("a failed run")) is None
