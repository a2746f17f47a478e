"""databricks.yml, checked offline (tests/bundle.py reads it as the Databricks CLI does): every
target builds with databricks-bundles' typed resources and the bundle's schema fields, the job
runs bronze -> stream -> silver -> gold with the job wheel and arguments tasks/spark/job.py
accepts, on serverless environment 4 or DBR 17.3 LTS, and Prefect's run-now (run_mode=job_id)
fits the job. Then each kind of mistake the checks exist for, made on purpose, is caught.
"""

from __future__ import annotations

import copy
import shlex

import pytest
import yaml

from logistics_pipeline.tasks.databricks.jobs import entrypoint_parameters, run_now_request
from logistics_pipeline.tasks.databricks.settings import DatabricksSettings
from logistics_pipeline.tasks.spark.job import parse_args
from tests.bundle import (
    LAYERS,
    ROOT,
    bundle_problems,
    job_parameter_defaults,
    job_wheel_module,
    load_bundle,
    raw_bundle,
    resolve,
    task_arguments,
    with_target,
)

TARGETS = ("dev", "prod", "prod_cluster")
VARIABLES = {"warehouse_id": "1234abcd", "kafka_bootstrap_servers": "broker-1:9092", "service_principal": "6f1c9a0e-0000-4000-8000-000000000001"}


def pinned(package: str) -> str:
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().split() if "==" in line)
    return f"{package}=={pins[package]}"


def job(target: str) -> dict:
    return load_bundle(target, VARIABLES)["resources"]["jobs"]["logistics_pipeline"]


def tasks(target: str) -> dict[str, dict]:
    return {task["task_key"]: task for task in job(target)["tasks"]}


@pytest.mark.parametrize("target", TARGETS)
def test_every_target_is_a_valid_bundle(target):
    assert bundle_problems(load_bundle(target, VARIABLES), raw_bundle()) == []


def test_targets_modes_and_identities():
    raw = raw_bundle()
    assert raw["targets"]["dev"] == {**raw["targets"]["dev"], "mode": "development", "default": True}
    assert "run_as" not in raw["targets"]["dev"]  # dev runs as whoever deploys it
    for target in ("prod", "prod_cluster"):
        config = load_bundle(target, VARIABLES)
        assert config["bundle"]["mode"] == "production"
        assert config["run_as"] == {"service_principal_name": VARIABLES["service_principal"]}
        assert config["workspace"]["root_path"].endswith(f"/{target}")  # one deployment per target
        assert {"level": "CAN_RUN", "service_principal_name": VARIABLES["service_principal"]} in config["permissions"]
        grants = config["resources"]["schemas"]["logistics"]["grants"]
        assert grants[0]["principal"] == VARIABLES["service_principal"]
        assert {"USE_SCHEMA", "MODIFY", "CREATE_TABLE", "READ_VOLUME", "WRITE_VOLUME"} <= set(grants[0]["privileges"])


def test_the_job_runs_the_layers_then_gold_in_order():
    for target in TARGETS:
        by_key = tasks(target)
        assert list(by_key) == [*LAYERS, "gold"]
        assert {key: [d["task_key"] for d in task.get("depends_on", [])] for key, task in by_key.items()} == {
            "bronze": [], "stream": ["bronze"], "silver": ["stream"], "gold": ["silver"],
        }


def test_unity_catalog_schema_volumes_and_the_paths_the_tasks_use():
    config = load_bundle("prod", VARIABLES)
    schema = config["resources"]["schemas"]["logistics"]
    assert (schema["catalog_name"], schema["name"]) == ("main", "logistics")
    volumes = config["resources"]["volumes"]
    assert {name: (v["catalog_name"], v["schema_name"], v["volume_type"]) for name, v in volumes.items()} == {
        name: ("main", "logistics", "MANAGED") for name in ("landing", "checkpoints", "artifacts")
    }
    parameters = job_parameter_defaults(job("prod"))
    assert parameters["source_path"] == "/Volumes/main/logistics/landing"
    assert parameters["checkpoint"] == "/Volumes/main/logistics/checkpoints/kafka_orders"
    # the same places the pipeline's own Databricks settings default to
    defaults = DatabricksSettings()
    assert (parameters["source_path"], parameters["checkpoint"]) == (defaults.source_path, defaults.stream_checkpoint)


def test_serverless_environment_4_with_the_job_wheel_and_pinned_dbt():
    for target in ("dev", "prod"):
        environments = {e["environment_key"]: e["spec"] for e in job(target)["environments"]}
        assert {spec["environment_version"] for spec in environments.values()} == {"4"}
        assert environments["job_wheel"]["dependencies"] == ["./dist/logistics_pipeline_job-*.whl"]
        assert environments["dbt"]["dependencies"] == [pinned("dbt-databricks")]
        assert {key: task["environment_key"] for key, task in tasks(target).items()} == {
            "bronze": "job_wheel", "stream": "job_wheel", "silver": "job_wheel", "gold": "dbt",
        }


def test_the_shared_job_cluster_is_runtime_17_3_lts():
    (cluster,) = job("prod_cluster")["job_clusters"]
    assert cluster["new_cluster"]["spark_version"] == "17.3.x-scala2.13"
    assert cluster["new_cluster"]["num_workers"] == 2  # the variable, as a number
    by_key = tasks("prod_cluster")
    assert {task["job_cluster_key"] for task in by_key.values()} == {cluster["job_cluster_key"]}
    assert "environments" not in job("prod_cluster")
    assert all(task["libraries"] == [{"whl": "./dist/logistics_pipeline_job-*.whl"}] for key, task in by_key.items() if key != "gold")
    assert by_key["gold"]["libraries"] == [{"pypi": {"package": pinned("dbt-databricks")}}]


def test_the_artifact_is_the_job_wheel_the_tasks_install():
    wheel = job_wheel_module()
    artifact = raw_bundle()["artifacts"]["job_wheel"]
    assert artifact["type"] == "whl" and "make job-wheel" in artifact["build"]
    prefix = wheel.DISTRIBUTION.replace("-", "_")
    assert artifact["files"] == [{"source": f"dist/{prefix}-*.whl"}]
    assert "\njob-wheel:" in (ROOT / "Makefile").read_text()


def test_gold_is_the_dbt_project_on_its_databricks_target():
    gold = tasks("prod")["gold"]["dbt_task"]
    project = (ROOT / "resources" / gold["project_directory"]).resolve()  # relative to the resource file
    assert (project / "dbt_project.yml").is_file() and (project / gold["profiles_directory"] / "profiles.yml").is_file()
    (command,) = gold["commands"]
    arguments = shlex.split(command)
    assert arguments[:4] == ["dbt", "build", "--target", "databricks"]
    profiles = yaml.safe_load((project / "profiles.yml").read_text())
    assert profiles["dbt_gold"]["outputs"]["databricks"]["type"] == "databricks"
    variables = yaml.safe_load(arguments[arguments.index("--vars") + 1])
    assert variables == {"databricks_http_path": "/sql/1.0/warehouses/1234abcd", "databricks_catalog": "main", "databricks_schema": "logistics"}


@pytest.mark.parametrize("layer", LAYERS)
def test_prefects_run_now_runs_one_task_with_the_arguments_of_a_submitted_run(layer):
    """run_mode=job_id: the request tasks/databricks/jobs.py sends for the layer runs only that
    task of the bundle's job, overrides only job parameters the job defines, and the task then
    gets the same arguments as the one-time run of run_mode=submit."""
    settings = DatabricksSettings(
        run_mode="job_id", job_id=123, catalog="lakehouse", schema_name="sales", source_path="/Volumes/lakehouse/sales/landing",
        kafka_bootstrap_servers="broker-9:9093", kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512", kafka_secret_scope="kafka",
    )
    request = run_now_request(layer, settings, "3f2504e0-4f89-11d3-9a0c-0305e82c3301", attempt=0)
    the_job = job("prod")
    assert request["only"] == [layer]
    parameters = job_parameter_defaults(the_job)
    assert set(request["job_parameters"]) <= set(parameters)
    (task,) = [t for t in the_job["tasks"] if t["task_key"] == layer]
    assert parse_args(task_arguments(task, {**parameters, **request["job_parameters"]})) == parse_args(entrypoint_parameters(layer, settings))


def test_without_sasl_the_empty_kafka_options_mean_none():
    """The stream task always passes --sasl-mechanism and --kafka-secret-scope; left empty they
    must mean what leaving them out means (KafkaSource sets no SASL option for a falsy mechanism)."""
    (stream,) = [t for t in job("prod")["tasks"] if t["task_key"] == "stream"]
    parsed = parse_args(task_arguments(stream, job_parameter_defaults(job("prod"))))
    assert (parsed.bootstrap_servers, parsed.security_protocol) == ("broker-1:9092", "PLAINTEXT")
    assert not parsed.sasl_mechanism and not parsed.kafka_secret_scope


def test_a_required_variable_left_out_is_refused():
    with pytest.raises(KeyError, match="warehouse_id"):
        load_bundle("prod", {key: value for key, value in VARIABLES.items() if key != "warehouse_id"})


# --- the checks catch the mistakes they are for --------------------------------------------------

def typo_in_a_task_field(raw):
    raw["resources"]["jobs"]["logistics_pipeline"]["tasks"][0]["python_wheel_task"]["paramters"] = ["bronze"]


def dependency_on_a_missing_task(raw):
    raw["resources"]["jobs"]["logistics_pipeline"]["tasks"][2]["depends_on"] = [{"task_key": "streams"}]


def another_package(raw):
    raw["resources"]["jobs"]["logistics_pipeline"]["tasks"][1]["python_wheel_task"]["package_name"] = "logistics_pipeline"


def another_entry_point(raw):
    raw["resources"]["jobs"]["logistics_pipeline"]["tasks"][0]["python_wheel_task"]["entry_point"] = "logistics-pipeline"


def parameters_the_job_refuses(raw):
    raw["resources"]["jobs"]["logistics_pipeline"]["tasks"][0]["python_wheel_task"]["parameters"] = ["bronze", "--catalog", "main"]


def an_undefined_job_parameter(raw):
    raw["resources"]["jobs"]["logistics_pipeline"]["tasks"][2]["python_wheel_task"]["parameters"][2] = "{{job.parameters.catalogue}}"


def a_task_without_compute(raw):
    raw["targets"]["prod"]["resources"]["jobs"]["logistics_pipeline"]["tasks"] = raw["targets"]["prod"]["resources"]["jobs"]["logistics_pipeline"]["tasks"][1:]


def an_unknown_environment(raw):
    raw["targets"]["prod"]["resources"]["jobs"]["logistics_pipeline"]["environments"][1]["environment_key"] = "dbt-env"


def a_typo_in_a_target(raw):
    raw["targets"]["prod"]["run-as"] = raw["targets"]["prod"].pop("run_as")


def a_typo_in_a_volume(raw):
    raw["resources"]["volumes"]["landing"]["volume_typ"] = "MANAGED"


def a_wrong_permission_level(raw):
    raw["permissions"][0]["level"] = "CAN_MANAGE_RUN"


def a_key_two_resources_share(raw):
    raw["resources"]["volumes"]["logistics_pipeline"] = raw["resources"]["volumes"].pop("artifacts")


MISTAKES = {
    typo_in_a_task_field: "Unexpected field 'paramters'",
    dependency_on_a_missing_task: "depends on 'streams', which is no task",
    another_package: "package_name 'logistics_pipeline' is not the job wheel's",
    another_entry_point: "entry_point 'logistics-pipeline' is not the job wheel's console script",
    parameters_the_job_refuses: "refuses its parameters ['bronze', '--catalog', 'main']",
    an_undefined_job_parameter: "{{job.parameters.catalogue}} is no parameter of the job",
    a_task_without_compute: "task bronze must run on exactly one compute, has none",
    an_unknown_environment: "task gold: environment 'dbt' is not in the job's environments",
    a_typo_in_a_target: "targets.prod: unknown field 'run-as'",
    a_typo_in_a_volume: "Unexpected field 'volume_typ'",
    a_wrong_permission_level: "level 'CAN_MANAGE_RUN' is not one of",
    a_key_two_resources_share: "the key 'logistics_pipeline' names more than one resource",
}


@pytest.mark.parametrize("mistake", MISTAKES, ids=lambda mistake: mistake.__name__)
def test_a_mistake_is_caught(mistake):
    raw = copy.deepcopy(raw_bundle())
    mistake(raw)
    problems = bundle_problems(resolve(with_target(raw, "prod"), VARIABLES), raw)
    assert any(MISTAKES[mistake] in problem for problem in problems), problems

