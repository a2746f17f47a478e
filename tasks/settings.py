"""One typed settings object for the whole pipeline.

Values come, lowest priority first, from defaults, environment variables prefixed
``LOGISTICS_`` (a few well-known names such as ``KAFKA_BOOTSTRAP_SERVERS`` are read too)
and finally flow parameters / CLI options passed to :func:`load_settings`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from logistics_pipeline.tasks.databricks.settings import DatabricksSettings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE_DIR = PROJECT_ROOT / "datasets"
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_gold"


class MaintenanceSettings(BaseSettings):
    """LOGISTICS_MAINTENANCE_*: how much history to keep and how to compact."""

    model_config = SettingsConfigDict(env_prefix="LOGISTICS_MAINTENANCE_", extra="forbid")

    retention_hours: int = Field(168, ge=0, description="Vacuum keeps files removed less than this long ago (time travel window).")
    enforce_retention_duration: bool = Field(
        True, description="Refuse a retention shorter than the table's delta.deletedFileRetentionDuration (168 h by default)."
    )
    target_file_size: int | None = Field(None, gt=0, description="Compaction target in bytes (default: delta.targetFileSize or 100 MB).")
    lock_timeout_seconds: float = Field(0, ge=0, description="How long to wait for a running pipeline before skipping the overwritten tables.")


class QualitySettings(BaseSettings):
    """LOGISTICS_QUALITY_*: the largest share of a silver table's rows a rule may quarantine.

    Each is a JSON object whose keys are a rule (``unrecoverable_price``, in every table that
    has it), a table (``crm_sales_details``: all its rules together) or ``table.rule``, and whose
    values are shares from 0 to 1, e.g. ``LOGISTICS_QUALITY_FAIL_SHARE='{"unrecoverable_price": 0.02}'``
    (see ``tasks.core.thresholds``)."""

    model_config = SettingsConfigDict(env_prefix="LOGISTICS_QUALITY_", extra="forbid")

    warn_share: dict[str, float] = Field(default_factory=dict, description="Over this share the silver layer logs a warning naming the rule.")
    fail_share: dict[str, float] = Field(default_factory=dict, description="Over this share the silver layer fails, naming the rule and the share.")


class Settings(BaseSettings):
    """Where the lake is, where sources come from, and which engine runs the layers."""

    model_config = SettingsConfigDict(env_prefix="LOGISTICS_", extra="forbid", populate_by_name=True)

    lake: str = Field("lake", description="Folder (or object-store URI) holding bronze/, silver/, quarantine/ and gold.duckdb.")
    source_dir: Path = Field(DEFAULT_SOURCE_DIR, description="Folder with source_crm/*.csv and source_erp/*.csv.")
    engine: Literal["local", "databricks"] = Field("local", description="Where bronze and silver run.")
    dbt_target: str = Field("local", description="dbt target in dbt_gold/profiles.yml.")
    max_unknown_lines: int | None = Field(
        None, ge=0, description="Most order lines gold may point to the unknown customer or product; more fails the run (unset: no limit).",
    )

    kafka_bootstrap_servers: str | None = Field(
        None,
        validation_alias=AliasChoices("LOGISTICS_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"),
        description="HOST:PORT[,HOST:PORT]; unset means the local landing-folder transport.",
    )
    kafka_topic: str = Field("orders", description="Topic the orders stream uses.")
    stream_batch_messages: int = Field(100_000, ge=1, le=1_000_000, description="Messages per bronze stream batch (one Delta commit each).")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_username: SecretStr | None = None
    kafka_password: SecretStr | None = None

    lock_timeout_seconds: float = Field(1800, ge=0, description="How long a run waits for another run holding the lake's lock, then fails.")
    maintenance: MaintenanceSettings = Field(default_factory=MaintenanceSettings, description="lake-maintenance: retention and compaction (LOGISTICS_MAINTENANCE_*).")
    quality: QualitySettings = Field(default_factory=QualitySettings, description="silver-layer: quality thresholds (LOGISTICS_QUALITY_*).")
    databricks: DatabricksSettings = Field(
        default_factory=DatabricksSettings, description="engine=databricks: credentials, compute, job ids (LOGISTICS_DATABRICKS_*)."
    )

    @field_validator("lake")
    @classmethod
    def _absolute_local_lake(cls, value: str) -> str:
        """Local lakes become absolute paths so dbt and sub-processes agree on them."""
        if "://" in value:
            return value.rstrip("/")
        return str(Path(value).expanduser().resolve())

    @field_validator("source_dir")
    @classmethod
    def _absolute_source_dir(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def is_local_lake(self) -> bool:
        return "://" not in self.lake


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with explicit (non-None) overrides on top."""
    return Settings(**{key: value for key, value in overrides.items() if value is not None})
