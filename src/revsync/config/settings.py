"""Process settings: where the store is, and every credential (from env or secret files)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from revsync.errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite:///revsync.db"
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Settings(BaseSettings):
    """Read from ``REVSYNC_*`` environment variables and files in ``REVSYNC_SECRETS_DIR``.

    A secret file is named like its variable, lower-case
    (``/run/secrets/revsync_meta_access_token``), the layout of Kubernetes and compose
    secrets.
    """

    model_config = SettingsConfigDict(
        env_prefix="REVSYNC_", extra="ignore", secrets_dir=None, case_sensitive=False
    )

    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description="SQLAlchemy URL of the store; postgresql+psycopg://… in production.",
    )
    require_database_url: bool = Field(
        False,
        description="Refuse to sync on the default SQLite file (the image sets it: a file "
        "inside a container is lost with it, and the next run would send everything again).",
    )
    auto_migrate: bool = Field(
        True,
        description="Commands that write migrate the store to revsync's schema; false for "
        "teams that run `revsync db upgrade` as a release step.",
    )
    config: Path = Field(Path("revsync.yaml"), description="Path of the mapping file.")
    log_level: str = Field(
        "INFO", description="Python logging level: DEBUG, INFO, WARNING, ERROR or CRITICAL."
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="text, or json: one JSON object per line, with the run's ID."
    )
    lease_seconds: int = Field(
        600,
        ge=30,
        description="How long a run's hold on a source or destination lasts without a renewal "
        "(each page or batch, and a heartbeat every third of it); a run that dies frees them "
        "after this long.",
    )

    secret_key: SecretStr | None = Field(
        None,
        description="Fernet key(s) that encrypt the credentials revsync keeps in the store "
        "(a Salesforce refresh token rotated by the connected app). Comma-separated to "
        "rotate keys: the first encrypts, each one decrypts.",
    )

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in _LEVELS:
            raise ValueError(f"use one of {', '.join(_LEVELS)}")
        return level

    google_ads_developer_token: SecretStr | None = None
    google_oauth_client_id: str | None = None
    google_oauth_client_secret: SecretStr | None = None
    google_oauth_refresh_token: SecretStr | None = None
    ga4_api_secret: SecretStr | None = None
    meta_access_token: SecretStr | None = None
    salesforce_client_id: str | None = None
    salesforce_client_secret: SecretStr | None = None
    salesforce_refresh_token: SecretStr | None = None
    salesforce_private_key: SecretStr | None = None
    salesforce_username: str | None = None
    hubspot_access_token: SecretStr | None = None

    _prefix: str = PrivateAttr("REVSYNC_")

    def variable(self, field: str) -> str:
        """The environment variable ``field`` is read from (named credentials included)."""
        return f"{self._prefix}{field.upper()}"


CREDENTIALS = ("google_ads_developer_token", "google_oauth_client_id",
               "google_oauth_client_secret", "google_oauth_refresh_token", "ga4_api_secret",
               "meta_access_token", "salesforce_client_id", "salesforce_client_secret",
               "salesforce_refresh_token", "salesforce_private_key", "salesforce_username",
               "hubspot_access_token")  # fmt: skip


def for_credentials(settings: Settings, name: str | None) -> Settings:
    """``settings`` with the credentials named ``name`` (a block's ``credentials:``):
    ``REVSYNC_<NAME>_<VARIABLE>`` or the secret file ``revsync_<name>_<variable>``."""
    if not name:
        return settings
    prefix = f"REVSYNC_{name.upper()}_"
    named = load_settings(prefix=prefix)
    own = settings.model_copy(update={field: getattr(named, field) for field in CREDENTIALS})
    own._prefix = prefix
    return own


def durable_store(settings: Settings) -> None:
    """``ConfigError`` when a process that uploads would keep its ledger in the default
    SQLite file although ``REVSYNC_REQUIRE_DATABASE_URL`` says that file does not last."""
    if settings.require_database_url and "database_url" not in settings.model_fields_set:
        raise ConfigError(
            "REVSYNC_DATABASE_URL is not set, and REVSYNC_REQUIRE_DATABASE_URL (set in the "
            "image) says the default SQLite file would not outlive this container: its ledger "
            "would be lost and the next run would send every conversion again (GA4 does not "
            "deduplicate). Set it to postgresql+psycopg://… or to sqlite:////path/on/a/volume"
        )


def load_settings(secrets_dir: Path | None = None, prefix: str = "REVSYNC_") -> Settings:
    """Settings from the environment, plus secret files when ``secrets_dir`` exists.

    A bad value is a ``ConfigError`` naming its variable, never echoing the value.
    """
    if secrets_dir is None:
        import os

        env_dir = os.environ.get("REVSYNC_SECRETS_DIR")
        secrets_dir = Path(env_dir) if env_dir else None
    try:
        if secrets_dir is not None and secrets_dir.is_dir():
            return Settings(_secrets_dir=secrets_dir, _env_prefix=prefix)  # type: ignore[call-arg]
        return Settings(_env_prefix=prefix)  # type: ignore[call-arg]
    except ValidationError as exc:
        problems = [
            f"{prefix}{'_'.join(map(str, error['loc'])).upper()}: {error['msg']}"
            + (f" (hint: {hint})" if (hint := _description(error["loc"])) else "")
            for error in exc.errors()
        ]
        raise ConfigError(f"{len(problems)} bad setting(s)", problems) from None


def _description(loc: tuple[int | str, ...]) -> str:
    field = Settings.model_fields.get(str(loc[0])) if loc else None
    return (field.description or "") if field is not None else ""
