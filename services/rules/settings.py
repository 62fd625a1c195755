"""The rules service's settings (env prefix ``RULES_``), built in main/create_app."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.contracts.topics import TopicSettings
from services.runtime.settings import ServiceSettings


class RulesSettings(ServiceSettings, BaseSettings):
    """``RULES_*``; Kafka and the database come from ``KAFKA_*`` and ``DATABASE_URL``."""

    model_config = SettingsConfigDict(
        env_prefix="RULES_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    topics: TopicSettings = Field(default_factory=TopicSettings)
    app_id: str = Field(
        default="social-loyalty.rules",
        description="Faust app id: the consumer group and the prefix of its internal topics.",
    )
    db_schema: str = Field(
        default="rules", pattern=r"^[a-z_][a-z0-9_]{0,62}$", description="PG schema of offers."
    )
    timezone: str = Field(
        default="Europe/Moscow", description="The program's time zone: periods are cut here."
    )
    store: str = Field(
        default="rocksdb://", description="Faust table store: rocksdb:// or memory:// (tests)."
    )
    data_dir: Path = Field(
        default=Path("deploy/.local/rules"), description="Faust data dir (rocksdb files)."
    )
    reload_interval_s: float = Field(
        default=3.0, gt=0, description="How often the worker checks PG for offer changes."
    )
    recent_events: int = Field(
        default=32, ge=1, description="Processed events remembered per member (redelivery)."
    )
    session_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=90,
        description="Kafka group session: how soon a dead worker's partitions move on.",
    )
    record_cache_size: int = Field(
        default=50_000, ge=1, description="Decoded member records kept in memory per worker."
    )
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8084, description="Offers HTTP API + health.")
    worker_http_port: int = Field(
        default=6067,
        description="Worker /healthz /readyz /metrics (0 = off); the detector's worker has 6066.",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)
