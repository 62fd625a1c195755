"""The read model's settings (env prefix ``READMODEL_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from services.runtime.settings import SchemaName, ServiceSettings, service_config


class ReadModelSettings(ServiceSettings, BaseSettings):
    """``READMODEL_*``; Kafka, the database, topics and API credentials come from the
    shared ``KAFKA_*``, ``DATABASE_URL``, ``TOPIC_PREFIX`` and ``ACCESS_*``."""

    model_config = service_config("READMODEL_")

    group: str = Field(
        default="social-loyalty.readmodel",
        description="Consumer group of the read model (its offsets live in PostgreSQL).",
    )
    db_schema: SchemaName = Field(default="readmodel", description="PostgreSQL schema.")
    http_host: str = Field(
        default="127.0.0.1", description="Query API bind address (0.0.0.0 for other hosts)."
    )
    http_port: int = Field(default=8083, ge=0, le=65535, description="Query API, health, metrics.")
    batch: int = Field(default=500, ge=1, description="Events per PostgreSQL transaction.")
