"""Settings for running bronze, the stream and silver as Databricks job runs (``engine=databricks``).

Environment variables are prefixed ``LOGISTICS_DATABRICKS_``; the credentials also read the
names the Databricks CLI and SDK use (``DATABRICKS_HOST``, ``DATABRICKS_TOKEN``,
``DATABRICKS_CLIENT_ID``, ``DATABRICKS_CLIENT_SECRET``, ``DATABRICKS_AZURE_TENANT_ID``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _env(name: str) -> AliasChoices:
    """Accept LOGISTICS_DATABRICKS_<NAME>, DATABRICKS_<NAME> and the field name itself."""
    return AliasChoices(f"LOGISTICS_DATABRICKS_{name.upper()}", f"DATABRICKS_{name.upper()}", name)


class DatabricksSettings(BaseSettings):
    """Where and how bronze and silver run on Databricks, and how long to wait for them."""

    model_config = SettingsConfigDict(env_prefix="LOGISTICS_DATABRICKS_", extra="forbid", populate_by_name=True)

    # Credentials (resolved by tasks.databricks.credentials): a saved block wins, else these; a token or OAuth M2M.
    credentials_block: str | None = Field(None, description="Name of a saved prefect_databricks DatabricksCredentials block.")
    host: str | None = Field(None, validation_alias=_env("host"), description="Workspace host; https:// is stripped.")
    token: SecretStr | None = Field(None, validation_alias=_env("token"), description="Personal access token.")
    client_id: str | None = Field(None, validation_alias=_env("client_id"), description="OAuth service principal id.")
    client_secret: SecretStr | None = Field(None, validation_alias=_env("client_secret"), description="OAuth service principal secret.")
    tenant_id: str | None = Field(
        None,
        validation_alias=AliasChoices("LOGISTICS_DATABRICKS_TENANT_ID", "DATABRICKS_AZURE_TENANT_ID", "tenant_id"),
        description="Azure tenant, only for an Entra ID service principal.",
    )

    # What to run.
    run_mode: Literal["submit", "job_id"] = Field("submit", description="One-time runs/submit, or run-now of a pre-configured job.")
    job_id: int | None = Field(
        None, description="run_mode=job_id: the bundle's job (databricks.yml); each layer runs only its own task (tasks keyed bronze, stream, silver)."
    )
    bronze_job_id: int | None = Field(None, description="run_mode=job_id: a job of your own for bronze (instead of job_id's task).")
    silver_job_id: int | None = Field(None, description="run_mode=job_id: a job of your own for silver (instead of job_id's task).")
    stream_job_id: int | None = Field(None, description="run_mode=job_id: a job of your own for the stream (instead of job_id's task).")
    task_type: Literal["python_wheel", "spark_python"] = Field("python_wheel", description="How the package's entrypoint is started.")
    wheel_path: str | None = Field(
        None,
        description=(
            "The job wheel (`make job-wheel` builds dist/logistics_pipeline_job-<version>-py3-none-any.whl; its "
            "file name changes with every build) uploaded to a volume or workspace files, e.g. "
            "/Volumes/main/logistics/artifacts/logistics_pipeline_job-0.1.0+3f9c2ab-py3-none-any.whl. "
            "Required with run_mode=submit; a job of run_mode=job_id names its own."
        ),
    )
    package_name: str = Field("logistics_pipeline_job", description="python_wheel_task package_name: the job wheel's distribution.")
    entry_point: str = Field("logistics-spark", description="python_wheel_task entry point name.")
    python_file: str | None = Field(None, description="Entrypoint script for task_type=spark_python, on a volume or in workspace files.")

    # Where it runs.
    compute: Literal["existing_cluster", "new_cluster", "serverless"] = "serverless"
    existing_cluster_id: str | None = None
    new_cluster_spark_version: str = Field(
        "17.3.x-scala2.13", description="Databricks Runtime: 17.3 LTS (Spark 4.0, Python 3.12), the Spark the tests run."
    )
    new_cluster_node_type_id: str | None = Field(None, description="Cloud node type, e.g. i3.xlarge (AWS) or Standard_DS3_v2 (Azure).")
    new_cluster_num_workers: int = Field(2, ge=0)
    serverless_environment_version: str = Field(
        "4", description="Serverless environment version: 4 is Python 3.12 with Databricks Connect 17 (Spark 4.0)."
    )

    # What the job reads and writes.
    catalog: str = "main"
    schema_name: str = Field("logistics", validation_alias=AliasChoices("LOGISTICS_DATABRICKS_SCHEMA", "schema_name"))
    source_path: str = Field("/Volumes/main/logistics/landing", description="Unity Catalog volume (or cloud path) with the CSVs.")
    http_path: str | None = Field(
        None, validation_alias=_env("http_path"), description="Gold (dbt target databricks): the SQL warehouse's HTTP path, e.g. /sql/1.0/warehouses/1234abcd."
    )

    # The order stream (layer "stream"): Kafka into bronze kafka_orders. Unset Kafka fields take
    # the pipeline's LOGISTICS_KAFKA_* values; without bootstrap servers there is no stream run.
    kafka_bootstrap_servers: str | None = Field(None, description="Kafka as the cluster reaches it (default: LOGISTICS_KAFKA_BOOTSTRAP_SERVERS).")
    kafka_topic: str | None = Field(None, description="Topic of the orders (default: LOGISTICS_KAFKA_TOPIC).")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] | None = Field(
        None, description="Default: LOGISTICS_KAFKA_SECURITY_PROTOCOL."
    )
    kafka_sasl_mechanism: str | None = Field(None, description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (default: LOGISTICS_KAFKA_SASL_MECHANISM).")
    kafka_secret_scope: str | None = Field(
        None, description="Databricks secret scope with the keys kafka-username and kafka-password; read on the cluster, never sent."
    )
    run_stream: bool = Field(True, description="bronze-layer submits the stream too; false when a continuous job of yours ingests it.")
    stream_checkpoint: str = Field(
        "/Volumes/main/logistics/checkpoints/kafka_orders", description="The stream's checkpoint location (a volume or cloud path)."
    )

    # Waiting and retrying.
    max_wait_seconds: float = Field(3 * 60 * 60, gt=0, description="Cancel the run after this long.")
    poll_frequency_seconds: float = Field(30, gt=0, description="Seconds between runs/get polls.")
    api_retry_timeout_seconds: int = Field(
        300, gt=0, description="How long databricks-sdk keeps retrying a request answered 429/503 or lost in transport (Retry-After wins)."
    )
    run_retries: int = Field(
        0, ge=0, description="Prefect retries of a layer whose run failed, timed out or was lost; a retry starts a new run, "
        "or attaches to this flow run's run that is still going or succeeded.",
    )


def load_databricks_settings(**overrides: Any) -> DatabricksSettings:
    """Databricks settings from the environment, with explicit (non-None) overrides on top."""
    return DatabricksSettings(**{key: value for key, value in overrides.items() if value is not None})
