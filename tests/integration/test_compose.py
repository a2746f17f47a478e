"""docker-compose.yml, .env.example and the worker's Dockerfile, checked without a Docker engine.

`docker-compose config` (Debian's docker-compose package, `make compose-tools`) is the real
parser: it validates the file against the Compose schema and resolves it, with no daemon.
The same checks then run on what it resolved and on the file as written (PyYAML), so they
still run where docker-compose cannot be installed. Not covered here: building the image
and starting the stack (`docker compose up`), which need a Docker engine.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "deployments" / "Dockerfile"
SERVICES = {"postgres", "prefect-server", "kafka", "worker"}
LAKE_MOUNT = "/data/lake"


# --- reading a compose model (as written, or as `docker-compose config` prints it) -----------


def environment(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # ["KEY=value", "KEY"]
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {key: (None if value is None else str(value)) for key, value in env.items()}


def published_ports(service: dict[str, Any]) -> set[tuple[int, int]]:
    """(host port, container port) pairs, from "4200:4200" or the long form."""
    pairs = set()
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            pairs.add((int(port["published"]), int(port["target"])))
        else:
            host, _, container = str(port).rpartition(":")
            pairs.add((int(host.rpartition(":")[2]), int(container.split("/")[0])))
    return pairs


def healthcheck_command(service: dict[str, Any]) -> str:
    test = (service.get("healthcheck") or {}).get("test")
    assert test, "no healthcheck"
    return " ".join(test) if isinstance(test, list) else str(test)


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def volume_mounts(service: dict[str, Any]) -> dict[str, str]:
    """target -> source of each volume."""
    mounts = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            mounts[volume["target"]] = volume.get("source")
        else:
            source, target = str(volume).split(":")[:2]
            mounts[target] = source
    return mounts


def check_stack(model: dict[str, Any], where: str) -> None:
    """Everything the stack must have, on a compose model (raw or resolved)."""
    services = model["services"]
    assert set(services) == SERVICES, f"{where}: services {sorted(services)}"
    postgres, server, kafka, worker = (services[name] for name in ("postgres", "prefect-server", "kafka", "worker"))

    # images
    assert str(postgres["image"]).startswith("postgres:"), postgres["image"]
    assert server["image"] == "prefecthq/prefect:3-python3.11"
    assert str(kafka["image"]).startswith("apache/kafka:"), kafka["image"]
    build = worker["build"]
    assert build["dockerfile"] == "deployments/Dockerfile"
    assert Path(ROOT, build["context"]).resolve() == ROOT

    # ports: the UI/API and Kafka for the host
    assert (4200, 4200) in published_ports(server)
    assert (9092, 9092) in published_ports(kafka)

    # healthchecks and start order by health
    assert "pg_isready" in healthcheck_command(postgres)
    assert "/api/health" in healthcheck_command(server)
    assert re.search(r"kafka-(topics|broker-api-versions)\.sh", healthcheck_command(kafka))
    assert depends_on(server) == {"postgres": "service_healthy"}
    assert depends_on(worker) == {"prefect-server": "service_healthy", "kafka": "service_healthy"}

    # the server on Postgres, through asyncpg
    server_env = environment(server)
    assert server_env.get("PREFECT_API_DATABASE_CONNECTION_URL", "").startswith("postgresql+asyncpg://")
    assert "@postgres:5432/" in server_env.get("PREFECT_API_DATABASE_CONNECTION_URL", "")
    assert "server start" in " ".join(server["command"]) and "0.0.0.0" in server["command"]

    # Kafka: KRaft single node, one listener for containers and one for the host
    kafka_env = environment(kafka)
    assert set(kafka_env.get("KAFKA_PROCESS_ROLES", "").split(",")) == {"broker", "controller"}
    advertised = kafka_env.get("KAFKA_ADVERTISED_LISTENERS", "").split(",")
    assert any(listener.endswith(":9092") for listener in advertised), advertised

    # the worker: where the server, the broker and the lake are
    worker_env = environment(worker)
    assert worker_env.get("PREFECT_API_URL", "") == "http://prefect-server:4200/api"
    bootstrap = worker_env.get("KAFKA_BOOTSTRAP_SERVERS", "")
    assert any(listener.endswith("://" + bootstrap) for listener in advertised), (bootstrap, advertised)
    assert bootstrap.startswith("kafka:"), "the worker reaches the broker by its service name"
    assert worker_env.get("LOGISTICS_LAKE", "") == LAKE_MOUNT
    assert worker_env.get("LOGISTICS_PROJECT_DIR", "") == "/opt/logistics"
    assert volume_mounts(worker).get(LAKE_MOUNT) == "lake", volume_mounts(worker)
    assert "lake" in (model.get("volumes") or {})


# --- the file as written --------------------------------------------------------------------


def test_compose_file_as_written():
    check_stack(yaml.safe_load(COMPOSE.read_text()), "docker-compose.yml")


# --- the real parser ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def docker_compose() -> str:
    executable = shutil.which("docker-compose")
    if executable is None:
        pytest.skip("docker-compose is not installed (Debian: `apt-get install docker-compose`, or `make compose-tools`)")
    return executable


@pytest.mark.parametrize("env_file", [None, ENV_EXAMPLE], ids=["defaults", "env-example"])
def test_docker_compose_config_resolves_the_stack(docker_compose, env_file, tmp_path):
    """Schema-valid for the Compose parser, with the built-in defaults and with .env.example."""
    command = [docker_compose, "--project-directory", str(ROOT), "-f", str(COMPOSE)]
    if env_file is not None:
        command += ["--env-file", str(env_file)]
    else:  # a .env someone keeps in the checkout must not change what is checked
        command += ["--env-file", str(tmp_path / "empty.env")]
        (tmp_path / "empty.env").write_text("")
    result = subprocess.run([*command, "config"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    check_stack(yaml.safe_load(result.stdout), "docker-compose config")


# --- .env.example ---------------------------------------------------------------------------


def example_names() -> dict[str, str | None]:
    """NAME -> value for `NAME=value` lines; commented `# NAME=...` lines map to None."""
    names: dict[str, str | None] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$", line.strip())
        if match:
            names.setdefault(match.group(2), None if match.group(1) else match.group(3))
    return names


def setting_names() -> list[tuple[str, ...]]:
    """For each pipeline setting, the environment variables that set it."""
    from pydantic import AliasChoices, BaseModel

    from logistics_pipeline.tasks.databricks.settings import DatabricksSettings
    from logistics_pipeline.tasks.settings import MaintenanceSettings, QualitySettings, Settings

    result = []
    for model in (Settings, DatabricksSettings, MaintenanceSettings, QualitySettings):
        prefix = model.model_config.get("env_prefix", "")
        for name, field in model.model_fields.items():
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                continue  # a nested settings model (Settings.databricks): its own fields are listed
            alias = field.validation_alias
            if isinstance(alias, AliasChoices):
                result.append(tuple(choice for choice in alias.choices if isinstance(choice, str) and choice.isupper()))
            else:
                result.append(((prefix + name).upper(),))
    return result


def test_env_example_lists_every_setting():
    names = example_names()
    missing = [" / ".join(choices) for choices in setting_names() if not any(choice in names for choice in choices)]
    assert not missing, f".env.example lacks: {', '.join(missing)}"
    compose_variables = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE.read_text()))
    assert not compose_variables - set(names), f"docker-compose.yml reads {sorted(compose_variables - set(names))}"
    for name in ("PREFECT_API_URL", "LOGISTICS_WORK_POOL", "KAFKA_BOOTSTRAP_SERVERS", "LOGISTICS_PROJECT_DIR", "DATABRICKS_HOST", "DATABRICKS_TOKEN"):
        assert name in names, name


def test_env_example_holds_no_secrets():
    names = example_names()
    for name in ("DATABRICKS_TOKEN", "DATABRICKS_CLIENT_SECRET", "LOGISTICS_KAFKA_PASSWORD", "LOGISTICS_DATABRICKS_TOKEN"):
        assert not names.get(name), f"{name} has a value in .env.example"


def test_env_example_values_are_valid_settings(monkeypatch):
    """Loaded into the environment as it is, .env.example gives valid pipeline settings."""
    from logistics_pipeline.tasks.databricks.settings import load_databricks_settings
    from logistics_pipeline.tasks.settings import load_settings

    for name, value in example_names().items():
        if value is not None:
            monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.engine == "local" and settings.kafka_bootstrap_servers is None
    databricks = load_databricks_settings()
    assert databricks.host in (None, "") and not databricks.token


# --- the worker image's build inputs --------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_dockerfile_builds_the_worker_from_what_the_repository_has():
    instructions = dockerfile_instructions()
    values = lambda keyword: [rest for kw, rest in instructions if kw == keyword]  # noqa: E731
    assert values("FROM") == ["python:3.11-slim"]
    assert values("WORKDIR") == ["/opt/logistics"]
    assert any("LOGISTICS_PROJECT_DIR=/opt/logistics" in env for env in values("ENV"))
    runs = " ".join(values("RUN"))
    assert "pip install -c constraints.txt" in runs
    assert not re.search(r"\b(openjdk|default-jre|temurin|java)\b", runs), "the worker image needs no Java"
    assert "prefect worker start --pool" in values("CMD")[-1]
    for copy in values("COPY"):
        sources = copy.split()[:-1]
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    copied = {Path(source).name for copy in values("COPY") for source in copy.split()[:-1]}
    assert {"flows", "tasks", "datasets", "dbt_gold", "pyproject.toml", "constraints.txt"} <= copied
