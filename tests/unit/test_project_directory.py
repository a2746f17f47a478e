"""The deployments' pull step: any worker's run starts in the project folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from logistics_pipeline.tasks.errors import PipelineError
from logistics_pipeline.tasks.orchestration.project import enter_project_directory
from logistics_pipeline.tasks.settings import PROJECT_ROOT


def test_a_worker_without_settings_runs_in_the_installed_project(tmp_path, monkeypatch):
    monkeypatch.delenv("LOGISTICS_PROJECT_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert enter_project_directory() == {"directory": str(PROJECT_ROOT)}
    assert Path.cwd() == PROJECT_ROOT
    assert (Path("flows") / "pipeline.py").is_file() and Path("dbt_gold", "dbt_project.yml").is_file()


def test_the_setting_overrides_the_folder(tmp_path, monkeypatch):
    (tmp_path / "flows").mkdir()
    monkeypatch.setenv("LOGISTICS_PROJECT_DIR", str(tmp_path))
    monkeypatch.chdir(PROJECT_ROOT)
    assert enter_project_directory() == {"directory": str(tmp_path)}
    assert Path(os.getcwd()) == tmp_path


def test_a_folder_without_the_flows_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("LOGISTICS_PROJECT_DIR", str(tmp_path))
    monkeypatch.chdir(PROJECT_ROOT)
    with pytest.raises(PipelineError, match=f"project folder {tmp_path} holds no flows/: set LOGISTICS_PROJECT_DIR"):
        enter_project_directory()
    assert Path.cwd() == PROJECT_ROOT
