"""Where the statistics database is: ``DATABASE_URL``, read by every part that uses it (the
stats processor writes, the gateway reads, the local stack runs the server it names)."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "postgresql://reviewstream:reviewstream@127.0.0.1:5433/reviewstream"


class DatabaseSettings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True)

    url: SecretStr = Field(
        default=SecretStr(DEFAULT_DATABASE_URL),
        validation_alias=AliasChoices("DATABASE_URL", "RS_DATABASE_URL"),
        description="PostgreSQL URL; the local stack runs its own server when it names this host",
    )
