"""Build the job wheel: what a Databricks cluster installs to run bronze, the stream and silver.

    python deployments/job_wheel.py [--out dist]     # prints the wheel's path (make job-wheel)

The project's own distribution (logistics-pipeline) carries Prefect, dbt, DuckDB and delta-rs;
a cluster needs none of them, and pip installing their lower bounds can upgrade the runtime's
preinstalled numpy under its pandas ("numpy.dtype size changed"). So the cluster gets its own
distribution, ``logistics-pipeline-job``:

* its modules are the import closure of ``logistics_pipeline.tasks.spark.job`` within this
  project (the Spark engine, the engine-neutral core, the Kafka client), found by reading the
  imports, so a new module the job needs is packed without anyone listing it;
* its requirements are only what a Databricks runtime lacks (``RUNTIME_LACKS``). Spark, Delta,
  numpy, pyarrow and the Databricks SDK come with the runtime; numpy's and pyarrow's lower bounds
  are below every runtime this project supports, so pip leaves them alone. A third-party import
  in the closure that is neither provided nor listed stops the build, naming it;
* its version carries a hash of everything packed (``0.1.0+<hash>``), so the file name changes
  whenever the code does and a cluster never keeps running a stale wheel of the same name.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "logistics_pipeline"
ENTRY_MODULE = f"{NAMESPACE}.tasks.spark.job"
DISTRIBUTION = "logistics-pipeline-job"
CONSOLE_SCRIPT = "logistics-spark"

# Third-party imports the job makes that a Databricks runtime does not ship, with the lowest
# versions the code needs (import name -> requirement).
RUNTIME_LACKS = {
    "polars": "polars>=1.30",
    "narwhals": "narwhals>=2.0",
    "orjson": "orjson>=3.10",
    "confluent_kafka": "confluent-kafka>=2.6",
}
# Shipped by Databricks Runtime 17.3 LTS and serverless environment 4 (Spark 4.0, Python 3.12).
# Listed as requirements with low bounds so a plain venv gets them too; the runtime's own
# versions (numpy 2.1, pyarrow 19 on 17.3 LTS) satisfy them, so pip keeps them.
RUNTIME_PROVIDES = {
    "pyspark": None,
    "delta": None,
    "databricks": None,
    "numpy": "numpy>=1.26",
    "pyarrow": "pyarrow>=15",
}


def module_path(module: str, root: Path = ROOT) -> Path | None:
    """The source file of one of this project's modules (``logistics_pipeline.tasks.x`` lives in
    ``tasks/x.py`` or ``tasks/x/__init__.py``), or None for a package-less namespace."""
    parts = module.split(".")[1:]
    if not parts:
        return None
    base = root.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{module}: no {base}.py or {base}/__init__.py")


def imports_of(path: Path, module: str) -> set[str]:
    """Absolute names of every module imported by the file, at any depth (lazy imports too)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def closure(entry: str = ENTRY_MODULE, root: Path = ROOT) -> tuple[dict[str, Path], set[str]]:
    """The project modules ``entry`` needs (name -> file, parents' ``__init__`` included) and the
    top-level names of the third-party modules they import."""
    modules: dict[str, Path] = {}
    third_party: set[str] = set()
    todo = [entry]
    while todo:
        name = todo.pop()
        if name in modules:
            continue
        try:
            path = module_path(name, root)
        except FileNotFoundError:
            continue  # `from package import function`: the name is not a module
        if path is None:
            continue
        modules[name] = path
        parent = name.rpartition(".")[0]
        if parent.count("."):
            todo.append(parent)
        for imported in imports_of(path, name):
            if imported.split(".")[0] == NAMESPACE:
                todo.append(imported)
            elif imported.split(".")[0] not in sys.stdlib_module_names and imported != "__future__":
                third_party.add(imported.split(".")[0])
    return modules, third_party


def requirements(third_party: set[str]) -> list[str]:
    unknown = sorted(third_party - RUNTIME_LACKS.keys() - RUNTIME_PROVIDES.keys())
    if unknown:
        raise SystemExit(
            f"the job imports {', '.join(unknown)}: add each to RUNTIME_LACKS (with a lower bound) or, "
            "if every supported Databricks runtime ships it, to RUNTIME_PROVIDES in deployments/job_wheel.py"
        )
    table = {**RUNTIME_LACKS, **RUNTIME_PROVIDES}
    return sorted(spec for name in third_party if (spec := table[name]))


def stage(modules: dict[str, Path], requires: list[str], into: Path, root: Path = ROOT) -> str:
    """Copy the modules under ``into/src`` and write its pyproject.toml; return the version."""
    base_version = tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]
    digest = hashlib.sha256("\n".join(requires).encode())
    for name in sorted(modules):
        target = into / "src" / Path(*name.split("."))
        target = target / "__init__.py" if modules[name].name == "__init__.py" else target.with_suffix(".py")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(modules[name], target)
        digest.update(name.encode() + b"\0" + target.read_bytes())
    version = f"{base_version}+{digest.hexdigest()[:12]}"
    dependencies = "".join(f'    "{spec}",\n' for spec in requires)
    (into / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "{DISTRIBUTION}"\nversion = "{version}"\nrequires-python = ">=3.11"\n'
        'description = "The logistics pipeline\'s Spark job (bronze, stream, silver) for Databricks job runs."\n'
        f"dependencies = [\n{dependencies}]\n\n"
        f'[project.scripts]\n{CONSOLE_SCRIPT} = "{ENTRY_MODULE}:cli"\n\n'
        '[tool.setuptools.packages.find]\nwhere = ["src"]\n'
    )
    return version


def build(out: Path, root: Path = ROOT) -> Path:
    """Build the wheel into ``out`` and return its path (an existing file of the same version is reused)."""
    modules, third_party = closure(root=root)
    with tempfile.TemporaryDirectory() as staging:
        version = stage(modules, requirements(third_party), Path(staging), root)
        wheel = out / f"{DISTRIBUTION.replace('-', '_')}-{version}-py3-none-any.whl"
        if wheel.exists():
            return wheel
        out.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), staging],
            check=True,
        )
    if not wheel.exists():
        raise SystemExit(f"pip built no {wheel.name} in {out}")
    return wheel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="folder for the wheel (default: dist/)")
    print(build(parser.parse_args().out.resolve()))


if __name__ == "__main__":
    main()
