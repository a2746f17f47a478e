"""Databricks credentials, resolved once for everything that signs in: the job runs
(databricks-sdk's ``Config`` / ``WorkspaceClient``) and dbt's databricks profile.

A saved prefect-databricks ``DatabricksCredentials`` block wins
(``LOGISTICS_DATABRICKS_CREDENTIALS_BLOCK``); otherwise ``LOGISTICS_DATABRICKS_*`` or the
standard ``DATABRICKS_*`` environment variables. Two ways to sign in: a personal access token,
or OAuth M2M with a service principal's client id and secret (with a tenant id: a Microsoft
Entra ID service principal on Azure). The host may be written with or without ``https://``;
it is kept bare, as dbt wants it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from databricks.sdk import WorkspaceClient
from databricks.sdk.clock import Clock
from databricks.sdk.config import Config
from prefect_databricks import DatabricksCredentials

from logistics_pipeline.tasks.databricks.settings import DatabricksSettings
from logistics_pipeline.tasks.errors import PipelineError, one_line

MISSING_CREDENTIALS = (
    "engine=databricks needs Databricks credentials: save a DatabricksCredentials block and set "
    "LOGISTICS_DATABRICKS_CREDENTIALS_BLOCK, or set DATABRICKS_HOST and DATABRICKS_TOKEN "
    "(or DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET for a service principal)"
)


@dataclass(frozen=True, repr=False)
class DatabricksAuth:
    """Where the workspace is and how to sign in to it: a token, or a service principal's
    client id and secret (plus a tenant id for a Microsoft Entra ID one). Its repr never shows
    a secret."""

    host: str
    """Bare: no scheme, no trailing slash (dbt's ``host``); ``url`` adds https://."""
    token: str | None = field(default=None, repr=False)
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    tenant_id: str | None = None

    @property
    def url(self) -> str:
        return f"https://{self.host}"

    @property
    def method(self) -> Literal["pat", "oauth-m2m", "azure-client-secret"]:
        """databricks-sdk's auth_type for these credentials."""
        if self.token:
            return "pat"
        return "azure-client-secret" if self.tenant_id else "oauth-m2m"

    def __repr__(self) -> str:
        who = f", client_id={self.client_id!r}" if self.client_id else ""
        return f"DatabricksAuth(host={self.host!r}, method={self.method!r}{who})"

    __str__ = __repr__


def bare_host(host: str) -> str:
    """``https://dbc-1234.cloud.databricks.com/`` and ``dbc-1234.cloud.databricks.com`` alike
    become the latter; a host that is not one (a path, a space) is refused in one line."""
    value = host.strip()
    if "://" in value:
        value = urlsplit(value).netloc
    value = value.rstrip("/")
    if not value or any(c in value for c in "/ ?#@"):
        raise PipelineError(f"Databricks host {host.strip()!r} is not a workspace host such as dbc-1234abcd-5678.cloud.databricks.com")
    return value


def resolve_credentials(settings: DatabricksSettings) -> DatabricksAuth:
    """The workspace and how to sign in, from the saved block or the environment; a one-line
    PipelineError saying what to configure when something is missing or contradictory. Checks
    the configuration only: nothing is sent to Databricks."""
    if settings.credentials_block:
        return _from_block(settings.credentials_block)

    token = settings.token.get_secret_value() if settings.token else ""
    client_id = settings.client_id or ""
    client_secret = settings.client_secret.get_secret_value() if settings.client_secret else ""
    if not (settings.host or token or client_id or client_secret):
        raise PipelineError(MISSING_CREDENTIALS)
    if not settings.host:
        raise PipelineError(
            "Databricks credentials are set but not the workspace: set DATABRICKS_HOST (e.g. dbc-1234abcd-5678.cloud.databricks.com)"
        )
    if token and (client_id or client_secret):
        raise PipelineError("set either DATABRICKS_TOKEN or DATABRICKS_CLIENT_ID/DATABRICKS_CLIENT_SECRET, not both")
    if bool(client_id) != bool(client_secret):
        raise PipelineError("a Databricks service principal needs both DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET")
    if not (token or client_id):
        raise PipelineError(
            "DATABRICKS_HOST is set but not how to sign in: set DATABRICKS_TOKEN, or DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET"
        )
    if token:
        return DatabricksAuth(host=bare_host(settings.host), token=token)
    return DatabricksAuth(host=bare_host(settings.host), client_id=client_id, client_secret=client_secret, tenant_id=settings.tenant_id or None)


def _from_block(name: str) -> DatabricksAuth:
    """The block validates itself on load: a token, or a client id and secret, never both."""
    try:
        block = DatabricksCredentials.load(name, _sync=True)
    except Exception as error:  # noqa: BLE001 - any load failure means the same fix
        raise PipelineError(
            f"cannot load the DatabricksCredentials block {name!r} "
            f"(LOGISTICS_DATABRICKS_CREDENTIALS_BLOCK): {type(error).__name__}: {one_line(error)}"
        ) from None
    return DatabricksAuth(
        host=bare_host(block.databricks_instance),
        token=block.token.get_secret_value() if block.token else None,
        client_id=block.client_id or None,
        client_secret=block.client_secret.get_secret_value() if block.client_secret else None,
        tenant_id=block.tenant_id or None,
    )


def sdk_config(auth: DatabricksAuth, settings: DatabricksSettings, clock: Clock | None = None) -> Config:
    """databricks-sdk's configuration for these credentials. The auth type is pinned, so no
    other DATABRICKS_* variable or ~/.databrickscfg profile changes how it signs in. OAuth asks
    the workspace for its token endpoint here; a refusal is one line. ``clock`` is the SDK's
    clock for its retry backoff (tests pass one that does not sleep)."""
    common = {"host": auth.url, "auth_type": auth.method, "retry_timeout_seconds": settings.api_retry_timeout_seconds, "clock": clock}
    if auth.method == "pat":
        credentials = {"token": auth.token}
    elif auth.method == "oauth-m2m":
        credentials = {"client_id": auth.client_id, "client_secret": auth.client_secret}
    else:
        credentials = {"azure_client_id": auth.client_id, "azure_client_secret": auth.client_secret, "azure_tenant_id": auth.tenant_id}
    try:
        return Config(**common, **credentials)
    except ValueError as error:  # the SDK masks secrets in its message
        raise PipelineError(f"Databricks sign-in to {auth.host} ({auth.method}) failed: {one_line(error)}") from None


def workspace_client(settings: DatabricksSettings, clock: Clock | None = None) -> WorkspaceClient:
    """A databricks-sdk WorkspaceClient signed in with the resolved credentials."""
    return WorkspaceClient(config=sdk_config(resolve_credentials(settings), settings, clock))
