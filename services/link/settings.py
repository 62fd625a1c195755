"""The link service's settings (env prefix ``LINK_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from services.link.identity import IdentitySettings
from services.runtime.settings import SchemaName, ServiceSettings, service_config


class LinkSettings(ServiceSettings, BaseSettings):
    """``LINK_*``; Kafka, the database, topics and API credentials come from the shared
    ``KAFKA_*``, ``DATABASE_URL``, ``TOPIC_PREFIX`` and ``ACCESS_*``."""

    model_config = service_config("LINK_")

    db_schema: SchemaName = Field(
        default="link",
        description="PostgreSQL schema of the links and the Apple nonces used.",
    )
    http_host: str = Field(default="127.0.0.1", description="Link API bind address.")
    http_port: int = Field(default=8085, ge=0, le=65535, description="Link API, health, metrics.")
    identity: IdentitySettings = Field(
        default_factory=IdentitySettings,
        description="The identity providers that vouch for linked profiles "
        "(LINK_IDENTITY__VK__CLIENT_ID, ...; see docs/link.md).",
    )
    ack_timeout_s: float = Field(
        default=15.0, gt=0, description="How long the link API waits for the broker's ack."
    )
