"""The Databricks Asset Bundle (databricks.yml, resources/*.yml) read as the Databricks CLI reads
it, without the CLI or a workspace, and what is wrong with it.

``load_bundle(target)`` does what ``databricks bundle validate -t <target>`` does before it
talks to a workspace: the includes, the target's overrides (mappings merged key by key, lists
appended, then a job's tasks, job clusters and parameters merged by their keys), and the
``${...}`` references (variables, bundle, resources) resolved. ``bundle_problems`` then checks it:

* the root, a target, an artifact and a variable hold only the fields of the bundle's JSON
  schema (the CLI's bundle/schema/jsonschema.json: config.Root, config.Target, config.Artifact,
  variable.Variable), every job, schema and volume builds with databricks-bundles' typed
  resources (``Job.from_dict`` refuses an unknown field at any depth), and no two resources
  share a key (the CLI refuses a job and a schema both keyed ``logistics``);
* the job: unique task keys, dependencies on tasks that exist, each task on exactly one
  compute that the job defines, the layers' python_wheel_tasks naming the job wheel's
  distribution and console script (deployments/job_wheel.py, pyproject's scripts), their
  parameters accepted by tasks/spark/job.py's own ``parse_args`` once ``{{job.parameters.x}}``
  takes the job parameter's default, and no reference to a job parameter the job lacks.
"""

from __future__ import annotations

import copy
import importlib.util
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("bronze", "stream", "silver")

# The fields the bundle's JSON schema allows (databricks/cli bundle/schema/jsonschema.json).
ROOT_FIELDS = {"artifacts", "bundle", "environments", "experimental", "include", "permissions", "presets", "python",
               "resources", "run_as", "scripts", "sync", "targets", "variables", "workspace"}
TARGET_FIELDS = {"artifacts", "bundle", "cluster_id", "compute_id", "default", "git", "mode", "permissions", "presets",
                 "resources", "run_as", "sync", "variables", "workspace"}
ARTIFACT_FIELDS = {"build", "dynamic_version", "executable", "files", "path", "type"}
VARIABLE_FIELDS = {"default", "description", "lookup", "type"}
BUNDLE_FIELDS = {"cluster_id", "compute_id", "databricks_cli_version", "deployment", "engine", "git", "name", "uuid"}
PERMISSION_FIELDS = {"group_name", "level", "service_principal_name", "user_name"}
PERMISSION_LEVELS = {"CAN_VIEW", "CAN_RUN", "CAN_MANAGE"}
MODES = {"development", "production"}

REFERENCE = re.compile(r"\$\{([A-Za-z0-9_.\-\[\]]+)\}")
JOB_PARAMETER = re.compile(r"\{\{\s*job\.parameters\.([A-Za-z0-9_]+)\s*\}\}")
KEYED_LISTS = {"tasks": "task_key", "job_clusters": "job_cluster_key", "parameters": "name"}


def job_wheel_module() -> Any:
    """deployments/job_wheel.py (a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("job_wheel", ROOT / "deployments" / "job_wheel.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- reading the bundle as the CLI does --------------------------------------------------------

def raw_bundle(root: Path = ROOT) -> dict[str, Any]:
    """databricks.yml with the files its ``include`` globs name merged in."""
    config = yaml.safe_load((root / "databricks.yml").read_text())
    for pattern in config.get("include", []):
        for path in sorted(root.glob(pattern)):
            config = merge(config, yaml.safe_load(path.read_text()), source=path)
    return config


def merge(base: Any, override: Any, source: Path | None = None) -> Any:
    """The CLI's merge: mappings key by key, lists appended, scalars replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(override, list):
        return base + copy.deepcopy(override)
    return copy.deepcopy(override)


def merge_keyed(items: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Elements with the same key merged into one (a job's tasks by task_key, ...)."""
    by_key: dict[Any, dict[str, Any]] = {}
    for item in items:
        by_key[item.get(key)] = merge(by_key[item.get(key)], item) if item.get(key) in by_key else item
    return list(by_key.values())


def with_target(config: dict[str, Any], target: str) -> dict[str, Any]:
    """The root with the target's overrides, as ``-t target`` selects them."""
    overrides = config["targets"][target]
    selected = {key: value for key, value in config.items() if key != "targets"}
    for field in ("bundle", "workspace", "artifacts", "resources", "sync", "permissions", "presets"):
        if field in overrides:
            selected[field] = merge(selected.get(field, {} if field != "permissions" else []), overrides[field])
    for name, value in (overrides.get("variables") or {}).items():  # a target's value replaces the default
        selected["variables"][name] = {**selected["variables"][name], "default": value}
    if "run_as" in overrides:
        selected["run_as"] = overrides["run_as"]
    selected["bundle"] = {**selected["bundle"], "target": target, "mode": overrides.get("mode")}
    for job in (selected.get("resources", {}).get("jobs") or {}).values():
        for field, key in KEYED_LISTS.items():
            if field in job:
                job[field] = merge_keyed(job[field], key)
    return selected


def resolve(config: dict[str, Any], variables: Mapping[str, Any]) -> dict[str, Any]:
    """Every ``${var.x}``, ``${bundle.x}``, ``${resources...}`` replaced by its value; a reference
    to nothing raises KeyError naming it. ``variables`` are the values given with --var."""
    declared = config.get("variables", {})
    missing = sorted(name for name, spec in declared.items() if name not in variables and "default" not in (spec or {}))
    if missing:
        raise KeyError(f"no value for the variables {missing}")
    context = {"var": {name: variables.get(name, (spec or {}).get("default")) for name, spec in declared.items()},
               "bundle": config["bundle"], "workspace": {"current_user": {"userName": "someone@example.com", "short_name": "someone"}}}

    def lookup(path: str) -> Any:
        value: Any = {**context, "resources": config.get("resources", {})}
        for part in path.split("."):
            if not isinstance(value, dict) or part not in value:
                raise KeyError(f"${{{path}}} refers to nothing")
            value = value[part]
        return value

    def substitute(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: substitute(item) for key, item in value.items()}
        if isinstance(value, list):
            return [substitute(item) for item in value]
        if not isinstance(value, str):
            return value
        whole = REFERENCE.fullmatch(value)
        if whole:  # a whole value keeps its type (num_workers: ${var.num_workers} stays a number)
            return lookup(whole.group(1))
        return REFERENCE.sub(lambda match: str(lookup(match.group(1))), value)

    for _ in range(10):  # references to references (a volume's schema_name -> the schema's name -> var.schema)
        resolved = substitute(config)
        if resolved == config:
            return resolved
        config = resolved
    raise ValueError("references do not resolve (a cycle?)")


def load_bundle(target: str, variables: Mapping[str, Any], root: Path = ROOT) -> dict[str, Any]:
    return resolve(with_target(raw_bundle(root), target), variables)


# --- what is wrong with it ---------------------------------------------------------------------

def unknown_fields(where: str, mapping: Mapping[str, Any] | None, allowed: set[str]) -> list[str]:
    return [f"{where}: unknown field {name!r}" for name in sorted(set(mapping or {}) - allowed)]


def schema_problems(raw: dict[str, Any]) -> list[str]:
    """Fields the bundle's JSON schema does not know, before any target is merged."""
    problems = unknown_fields("databricks.yml", raw, ROOT_FIELDS) + unknown_fields("bundle", raw.get("bundle"), BUNDLE_FIELDS)
    for name, artifact in (raw.get("artifacts") or {}).items():
        problems += unknown_fields(f"artifacts.{name}", artifact, ARTIFACT_FIELDS)
    for name, variable in (raw.get("variables") or {}).items():
        problems += unknown_fields(f"variables.{name}", variable, VARIABLE_FIELDS)
    for name, target in (raw.get("targets") or {}).items():
        problems += unknown_fields(f"targets.{name}", target, TARGET_FIELDS)
        if target.get("mode") not in (None, *MODES):
            problems.append(f"targets.{name}: mode {target.get('mode')!r} is not development or production")
    return problems


def typed_problems(config: dict[str, Any]) -> list[str]:
    """Each resource as databricks-bundles' typed classes build it."""
    from databricks.bundles.jobs import Job, JobRunAs
    from databricks.bundles.schemas import Schema
    from databricks.bundles.volumes import Volume

    problems = []
    keys = [key for resources in (config.get("resources") or {}).values() for key in resources]
    problems += [f"resources: the key {key!r} names more than one resource" for key in sorted({k for k in keys if keys.count(k) > 1})]
    kinds: dict[str, Callable[[dict], Any]] = {"jobs": Job.from_dict, "schemas": Schema.from_dict, "volumes": Volume.from_dict}
    for kind, resources in (config.get("resources") or {}).items():
        if kind not in kinds:
            problems.append(f"resources.{kind}: not a kind this bundle is checked for")
            continue
        for name, resource in resources.items():
            try:
                kinds[kind](resource)
            except (ValueError, TypeError, KeyError) as error:
                problems.append(f"resources.{kind}.{name}: {error}")
    if "run_as" in config:
        try:
            run_as = JobRunAs.from_dict(config["run_as"])
        except (ValueError, TypeError) as error:
            problems.append(f"run_as: {error}")
        else:
            if bool(run_as.service_principal_name) == bool(run_as.user_name):
                problems.append("run_as: name exactly one of service_principal_name and user_name")
    for permission in config.get("permissions") or []:
        problems += unknown_fields("permissions", permission, PERMISSION_FIELDS)
        if permission.get("level") not in PERMISSION_LEVELS:
            problems.append(f"permissions: level {permission.get('level')!r} is not one of {sorted(PERMISSION_LEVELS)}")
        if len(set(permission) & (PERMISSION_FIELDS - {"level"})) != 1:
            problems.append(f"permissions: {permission} must name one user, group or service principal")
    return problems


def job_parameter_defaults(job: dict[str, Any]) -> dict[str, str]:
    return {parameter["name"]: str(parameter.get("default", "")) for parameter in job.get("parameters") or []}


def task_arguments(task: dict[str, Any], job_parameters: Mapping[str, str]) -> list[str]:
    """A python_wheel_task's command line as the task gets it: ``{{job.parameters.x}}`` replaced
    (KeyError for a job parameter the job does not define)."""
    return [JOB_PARAMETER.sub(lambda match: job_parameters[match.group(1)], str(argument))
            for argument in task["python_wheel_task"].get("parameters") or []]


def job_problems(job: dict[str, Any], scripts: Mapping[str, str]) -> list[str]:
    """The job's tasks against each other, its compute, the job wheel and the Spark job's arguments."""
    from logistics_pipeline.tasks.spark.job import parse_args

    wheel = job_wheel_module()
    problems = []
    tasks = job.get("tasks") or []
    keys = [task.get("task_key") for task in tasks]
    if len(keys) != len(set(keys)):
        problems.append(f"task keys are not unique: {keys}")
    environments = {environment["environment_key"] for environment in job.get("environments") or []}
    clusters = {cluster["job_cluster_key"] for cluster in job.get("job_clusters") or []}
    defaults = job_parameter_defaults(job)
    for task in tasks:
        key = task.get("task_key")
        problems += [f"task {key} depends on {d.get('task_key')!r}, which is no task of the job"
                     for d in task.get("depends_on") or [] if d.get("task_key") not in keys]
        compute = [field for field in ("environment_key", "job_cluster_key", "existing_cluster_id", "new_cluster") if task.get(field)]
        if len(compute) != 1:
            problems.append(f"task {key} must run on exactly one compute, has {compute or 'none'}")
        elif task.get("environment_key") and task["environment_key"] not in environments:
            problems.append(f"task {key}: environment {task['environment_key']!r} is not in the job's environments")
        elif task.get("job_cluster_key") and task["job_cluster_key"] not in clusters:
            problems.append(f"task {key}: job cluster {task['job_cluster_key']!r} is not in the job's job_clusters")
        if "python_wheel_task" not in task:
            continue
        wheel_task = task["python_wheel_task"]
        if wheel_task.get("package_name") != wheel.DISTRIBUTION.replace("-", "_"):
            problems.append(f"task {key}: package_name {wheel_task.get('package_name')!r} is not the job wheel's {wheel.DISTRIBUTION!r}")
        entry = wheel_task.get("entry_point")
        if entry != wheel.CONSOLE_SCRIPT or entry not in scripts:
            problems.append(f"task {key}: entry_point {entry!r} is not the job wheel's console script {wheel.CONSOLE_SCRIPT!r} (pyproject: {sorted(scripts)})")
        elif scripts[entry] != f"{wheel.ENTRY_MODULE}:cli":
            problems.append(f"task {key}: pyproject's {entry} runs {scripts[entry]}, the job wheel's {wheel.ENTRY_MODULE}:cli")
        try:
            arguments = task_arguments(task, defaults)
        except KeyError as error:
            problems.append(f"task {key}: {{{{job.parameters.{error.args[0]}}}}} is no parameter of the job")
            continue
        try:
            parsed = parse_args(arguments)
        except SystemExit:
            problems.append(f"task {key}: tasks/spark/job.py refuses its parameters {arguments}")
            continue
        if parsed.layer != key:
            problems.append(f"task {key} runs the layer {parsed.layer!r}")
    return problems


def bundle_problems(config: dict[str, Any], raw: dict[str, Any] | None = None) -> list[str]:
    """Everything found wrong with a loaded bundle (``raw``: as written, for the schema check)."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    problems = schema_problems(raw) if raw is not None else []
    problems += typed_problems(config)
    for name, job in (config.get("resources", {}).get("jobs") or {}).items():
        problems += [f"job {name}: {problem}" for problem in job_problems(job, scripts)]
    return problems
