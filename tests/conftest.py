"""Shared fixtures: a Prefect test server for the session, generated sources, the reference data."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import settings
from packaging.version import Version

from logistics_pipeline.tasks.orchestration.server import default_to_sqlite_server_settings

pytest_plugins = ["tests.fixtures.kafka", "tests.fixtures.spark"]

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
default_to_sqlite_server_settings()  # the session's server and every temporary one

settings.register_profile("full", max_examples=60, deadline=None)
settings.register_profile("fast", max_examples=15, deadline=None)
settings.load_profile("full")
"""Examples per hypothesis property that sets no count of its own: `make test` runs the "full"
60, the fast lane (`make test-fast`, `--hypothesis-profile=fast`) the first 15 of the same
derandomized sequence. No deadline: both lanes run a pytest worker per core, and an example
that takes 300 ms while the other worker builds a lake is not a failure (speed is measured by
`make bench`, not by tests)."""

REFERENCE_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "reference-data" / "datasets"

MARKER_OF_FIXTURE = {"kafka_broker": "kafka", "kafka_bootstrap": "kafka", "kafka_topic": "kafka", "spark": "spark", "spark_connect": "connect"}
"""A test that uses one of these fixtures (directly or through another fixture) gets the
marker, so `-m "not kafka and not spark and not e2e and not slow"` is a dependable lane. A test
on `spark_connect` gets `connect` and also `spark` (the Connect server runs in the classic session's JVM)."""


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture, marker in MARKER_OF_FIXTURE.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)
    spark_modules = {item.path for item in items if item.get_closest_marker("spark")}
    for item in items:
        group = xdist_group(item, spark_modules)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))


def pytest_configure(config: pytest.Config) -> None:
    """Stop at once when `--dist loadgroup` would not group: pytest-xdist 3.8 marks a grouped test
    by rewriting ``item._nodeid``, which pytest 9.2 no longer reads (pytest-xdist#1386), so a
    second Spark would start and module fixtures be built twice, silently. pyproject.toml pins
    pytest below 9.2; this says why, should the pin be lifted before pytest-xdist is fixed."""
    if config.getoption("dist", None) != "loadgroup" or hasattr(config, "workerinput"):
        return
    xdist_version = Version(importlib.metadata.version("pytest-xdist"))
    if Version(pytest.__version__) >= Version("9.2") and xdist_version <= Version("3.8.0"):
        raise pytest.UsageError(
            f"pytest {pytest.__version__} with pytest-xdist {xdist_version} does not group tests (pytest-xdist#1386): "
            "see the pytest pin in pyproject.toml"
        )


def xdist_group(item: pytest.Item, spark_modules: set[Path]) -> str | None:
    """Which tests one pytest worker runs together (`make test` runs `--dist loadgroup`).

    Every module that touches Spark goes to one worker, so only one Spark JVM starts (and only
    one resolves its jars into the shared Ivy cache); a module whose tests share a module-scoped
    fixture (a server stack, a lake built once) stays on one worker, so the fixture is built once.
    Every other test is scheduled on its own, which keeps both workers busy to the end.
    """
    if item.path in spark_modules:
        return "spark"
    fixtures = getattr(item, "_fixtureinfo", None)
    scopes = {definition.scope for definitions in (fixtures.name2fixturedefs.values() if fixtures else ()) for definition in definitions}
    return item.nodeid.split("::")[0] if scopes & {"module", "class", "package"} else None


@pytest.fixture(scope="session")
def prefect_server():
    """One temporary Prefect server (SQLite) for every flow the tests run in-process."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def generated_sources(tmp_path_factory) -> Path:
    """A generated CRM/ERP export (scale 0.2), dirt included."""
    from logistics_pipeline.datasets.generate import generate_datasets

    out = tmp_path_factory.mktemp("sources")
    generate_datasets(out, scale=0.2, seed=7)
    return out


@pytest.fixture
def sources(tmp_path, generated_sources) -> Path:
    """A copy of the generated export that a test may damage."""
    copy = tmp_path / "sources"
    shutil.copytree(generated_sources, copy)
    return copy


@pytest.fixture(scope="session")
def reference_sources() -> Path:
    if not REFERENCE_DATASETS.is_dir():
        pytest.skip("../shared/reference-data is not present")
    return REFERENCE_DATASETS
