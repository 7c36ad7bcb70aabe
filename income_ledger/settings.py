"""Settings come from environment variables prefixed LEDGER_ (documented in the README)."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///ledger.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEDGER_", extra="ignore")

    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description="SQLAlchemy URL: sqlite:///path.db (embedded) or postgresql://user@host/db",
    )
    aggregate_cache_size: int = Field(
        1000, ge=0, description="aggregates kept in memory per process (0 turns caching off)"
    )

    @field_validator("database_url")
    @classmethod
    def _known_backend(cls, url: str) -> str:
        if url.startswith("postgres://"):
            url = "postgresql://" + url.removeprefix("postgres://")
        if not url.startswith(("sqlite://", "postgresql://", "postgresql+psycopg2://")):
            raise ValueError(
                "LEDGER_DATABASE_URL must start with sqlite:// or postgresql:// "
                f"(got {url.split(':', 1)[0]}://...)"
            )
        return url

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")
