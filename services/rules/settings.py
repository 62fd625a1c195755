"""The rules service's settings (env prefix ``RULES_``), built in main/create_app."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from pydantic import Field
from pydantic_settings import BaseSettings

from services.runtime.settings import SchemaName, ServiceSettings, TimeZoneName, service_config


class RulesSettings(ServiceSettings, BaseSettings):
    """``RULES_*``; Kafka and the database come from ``KAFKA_*`` and ``DATABASE_URL``."""

    model_config = service_config("RULES_")

    app_id: str = Field(
        default="social-loyalty.rules",
        description="The worker's consumer group and the stem of its internal topics.",
    )
    db_schema: SchemaName = Field(default="rules", description="PG schema of offers.")
    ledger_schema: SchemaName = Field(
        default="actions",
        description="The actions service's schema (its ACTIONS_DB_SCHEMA): replay --apply "
        "reads there which of its credits were new.",
    )
    timezone: TimeZoneName = Field(
        default="Europe/Moscow", description="The program's time zone: periods are cut here."
    )
    instance_id: str = Field(
        default="0",
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="This worker's name in the group: its static membership "
        "(group.instance.id) and transactional.id. Unique per worker; keep it across "
        "restarts so a restarted worker fences its predecessor at once.",
    )
    commit_interval_s: float = Field(
        default=0.1,
        gt=0,
        le=10,
        description="A transaction (commands, changelog, offsets) commits at least this "
        "often; an event waits up to this long at each of the worker's two hops before "
        "its commands are readable (bench rules: 0.1 s keeps p99 under 1 s).",
    )
    commit_every: int = Field(
        default=5000, ge=1, description="...or after this many records, whichever is first."
    )
    transaction_timeout_s: float = Field(
        default=30.0,
        ge=1,
        description="How long the broker keeps a dead worker's open transaction before "
        "aborting it (it blocks read_committed readers of that partition meanwhile).",
    )
    reload_interval_s: float = Field(
        default=3.0, gt=0, description="How often the worker checks PG for offer changes."
    )
    seen_events: int = Field(
        default=64, ge=1, description="Event ids remembered per member to drop duplicates."
    )
    session_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=90,
        description="Kafka group session: how soon a dead worker's partitions move on.",
    )
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8084, description="Offers HTTP API + health.")
    worker_http_port: int = Field(
        default=6067,
        ge=0,
        le=65535,
        description="Worker /healthz /readyz /metrics (0: any); the detector's worker has 6066.",
    )

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)
