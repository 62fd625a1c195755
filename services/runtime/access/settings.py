"""``ACCESS_*``: where the API credentials live and how much clock difference a signed
request may have. The database itself is ``DATABASE_URL`` (``DatabaseSettings``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class AccessSettings(BaseSettings):
    """Shared by every API and the ``credentials`` CLI: they must agree on the schema."""

    model_config = SettingsConfigDict(env_prefix="ACCESS_", extra="ignore", frozen=True)

    db_schema: str = Field(
        default="access",
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="PostgreSQL schema of the credentials and the nonces seen.",
    )
    clock_skew_s: int = Field(
        default=300,
        ge=1,
        le=3600,
        description="How far a request's ts may be from the server's clock; nonces are "
        "kept this long.",
    )
