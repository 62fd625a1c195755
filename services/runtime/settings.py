"""Settings shared by every service: Kafka, the database, topic names, API credentials.

Each service has one settings class, ``class XSettings(ServiceSettings, BaseSettings)``
with its own env prefix, so ``COLLECTOR_KAFKA__BOOTSTRAP_SERVERS`` configures the
collector alone while plain ``KAFKA_BOOTSTRAP_SERVERS`` configures everyone. Settings
are built in ``main``/``create_app``, never at import time.
"""

from __future__ import annotations

from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, Field, SecretStr, StringConstraints
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.contracts.topics import TopicSettings

SchemaName = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]{0,62}$")]
"""A PostgreSQL schema a setting names: a lower-case SQL identifier (letters, digits, _)."""


def _known_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


TimeZoneName = Annotated[str, AfterValidator(_known_zone)]
"""An IANA time zone name a setting names (``Europe/Moscow``), checked when read."""


class KafkaSettings(BaseSettings):
    """Where the brokers are and how to authenticate to them."""

    model_config = SettingsConfigDict(env_prefix="KAFKA_", extra="ignore", frozen=True)

    bootstrap_servers: str = Field(
        default="127.0.0.1:19092", description="Comma-separated host:port list."
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: SecretStr | None = None
    schema_registry_url: str | None = Field(
        default=None,
        description="With a registry, values use the Confluent wire format; "
        "without one, Avro single-object encoding.",
    )
    client_id_prefix: str = "social-loyalty"
    connect_timeout_s: float = Field(
        default=10.0, gt=0, description="How long to wait for the cluster before failing."
    )


class DatabaseSettings(BaseSettings):
    """The PostgreSQL the services keep their state in."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    database_url: SecretStr = Field(
        default=SecretStr("postgresql://postgres@127.0.0.1:55432/social_loyalty"),
        description="libpq connection URI.",
    )
    connect_timeout_s: int = Field(default=5, gt=0)


class AccessSettings(BaseSettings):
    """Shared by every API and the ``credentials`` CLI: they must agree on the schema."""

    model_config = SettingsConfigDict(env_prefix="ACCESS_", extra="ignore", frozen=True)

    db_schema: SchemaName = Field(
        default="access",
        description="PostgreSQL schema of the credentials and the nonces seen.",
    )
    clock_skew_s: int = Field(
        default=300,
        ge=1,
        le=3600,
        description="How far a request's ts may be from the server's clock; nonces are "
        "kept this long.",
    )


def service_config(env_prefix: str) -> SettingsConfigDict:
    """The settings config of a service: its own prefix (``RULES_``), nested blocks with
    ``__`` (``RULES_KAFKA__BOOTSTRAP_SERVERS``), unknown variables ignored, frozen."""
    return SettingsConfigDict(
        env_prefix=env_prefix, env_nested_delimiter="__", extra="ignore", frozen=True
    )


class ServiceSettings(BaseModel):
    """Fields every service has; services subclass ``BaseSettings`` with this mixin."""

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    access: AccessSettings = Field(
        default_factory=AccessSettings,
        description="API credentials (ACCESS_DB_SCHEMA, ACCESS_CLOCK_SKEW_S).",
    )
