"""The pull step of every deployment: start each flow run in this project's folder.

Entrypoints (``flows/pipeline.py:...``) and dbt_gold/ are paths relative to the project, and a
worker may start anywhere: ``prefect worker start --pool logistics-process`` as ``prefect deploy``
advises, from any folder, or the worker image. The worker's Python already imports this project,
so the folder is known without anyone setting it: the one holding the installed ``flows`` and
``tasks`` packages. ``LOGISTICS_PROJECT_DIR`` overrides it (a worker whose code lives elsewhere).
"""

from __future__ import annotations

import os
from pathlib import Path

from logistics_pipeline.tasks.errors import PipelineError
from logistics_pipeline.tasks.settings import PROJECT_ROOT


def enter_project_directory() -> dict[str, str]:
    """Change into the project folder; Prefect records the returned ``directory``."""
    directory = Path(os.environ.get("LOGISTICS_PROJECT_DIR") or PROJECT_ROOT)
    if not (directory / "flows").is_dir():
        raise PipelineError(
            f"project folder {directory} holds no flows/: set LOGISTICS_PROJECT_DIR to the checkout "
            "(or the image's /opt/logistics), or start the worker from the project's virtualenv"
        )
    os.chdir(directory)
    return {"directory": str(directory)}
