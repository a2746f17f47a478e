"""The fast lane: pure unit tests. A test here that writes a Delta table fails, so that the
lane stays fast and dependable (tables are written in tests/integration)."""

from __future__ import annotations

import deltalake
import pytest

from logistics_pipeline.tasks.local import lake


def _no_delta_writes(*_args, **_kwargs):
    raise AssertionError("tests/unit writes no Delta table: move this test to tests/integration")


@pytest.fixture(autouse=True)
def no_delta_writes(monkeypatch):
    monkeypatch.setattr(deltalake, "write_deltalake", _no_delta_writes)
    monkeypatch.setattr(lake, "write_deltalake", _no_delta_writes)
