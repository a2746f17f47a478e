"""Shared fixtures: a Prefect test server for the session, generated sources, the reference data."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import settings

pytest_plugins = ["tests.fixtures.kafka", "tests.fixtures.spark"]

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

settings.register_profile("full", max_examples=60)
settings.register_profile("fast", max_examples=15)
settings.load_profile("full")
"""Examples per hypothesis property that sets no count of its own: `make test` runs the "full"
60, the fast lane (`make test-fast`, `--hypothesis-profile=fast`) the first 15 of the same
derandomized sequence."""

REFERENCE_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "reference-data" / "datasets"

MARKER_OF_FIXTURE = {"kafka_broker": "kafka", "kafka_bootstrap": "kafka", "kafka_topic": "kafka", "spark": "spark", "spark_connect": "connect"}
"""A test that uses one of these fixtures (directly or through another fixture) gets the
marker, so `-m "not kafka and not spark and not e2e and not slow"` is a dependable lane. A test
on `spark_connect` gets `connect` and also `spark` (the Connect server runs in the classic session's JVM)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture, marker in MARKER_OF_FIXTURE.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)


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
