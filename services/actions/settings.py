"""The actions service's one settings class (env prefix ``ACTIONS_``)."""

from __future__ import annotations

from datetime import time
from enum import StrEnum
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from services.runtime.settings import SchemaName, ServiceSettings, TimeZoneName, service_config

TEMPLATES_DIR = Path(__file__).parent / "templates"


class DeductPolicy(StrEnum):
    """What a deduction larger than the balance does."""

    ALLOW_NEGATIVE = "allow_negative"
    CLAMP = "clamp"


class ActionsSettings(ServiceSettings, BaseSettings):
    """Everything the four consumers, the read API and the senders need.

    ``ACTIONS_KAFKA__BOOTSTRAP_SERVERS`` points the actions service alone at another
    cluster; plain ``KAFKA_*``, ``DATABASE_URL`` and ``TOPIC_PREFIX`` configure it like
    every other service.
    """

    model_config = service_config("ACTIONS_")

    db_schema: SchemaName = Field(
        default="actions",
        description="PostgreSQL schema holding the ledger, deliveries, offsets and outbox.",
    )
    group_prefix: str = Field(
        default="social-loyalty.actions",
        description="Consumer groups are <prefix>.bonus, .notify, .mailing, .counter.",
    )
    instance_id: str | None = Field(
        default=None,
        description="Static group membership (group.instance.id = <group>.<id>): a restarted "
        "process takes its partitions back at once instead of waiting for a rebalance.",
    )
    session_timeout_ms: int = Field(default=10_000, ge=6_000)
    batch_size: int = Field(default=1000, ge=1, le=100_000, description="Messages per batch.")
    poll_timeout_s: float = Field(default=0.5, gt=0, description="Longest wait for a batch.")

    deduct_policy: DeductPolicy = Field(
        default=DeductPolicy.CLAMP,
        description="allow_negative: balances may go below zero; clamp: deduct at most the "
        "balance and record the shortfall on the entry.",
    )

    host: str = Field(default="127.0.0.1", description="Read API and /metrics bind address.")
    port: int = Field(default=8086, ge=0, le=65535)

    templates_dir: Path = Field(default=TEMPLATES_DIR, description="<template_id>.yaml files.")
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=8025, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_from: str = "Loyalty Program <no-reply@loyalty.example>"
    email_recipient: str = Field(
        default="{member_id}@members.loyalty.example",
        description="Address of a member when the command carries no `email` param.",
    )
    sms_url: str = "http://127.0.0.1:8087/sms"
    push_url: str = "http://127.0.0.1:8087/push"
    viber_url: str = "http://127.0.0.1:8087/viber"
    provider_token: SecretStr | None = Field(
        default=None, description="Sent as `Authorization: Bearer ...` to HTTP providers."
    )
    send_timeout_s: float = Field(default=5.0, gt=0)
    send_attempts: int = Field(default=4, ge=1, le=20, description="Tries before dead letter.")
    backoff_base_s: float = Field(default=0.2, ge=0)
    backoff_max_s: float = Field(default=5.0, ge=0)
    send_concurrency: int = Field(default=8, ge=1, le=64)

    mailing_default_enabled: bool = Field(
        default=True, description="A member with no subscription row receives marketing."
    )
    timezone: TimeZoneName = Field(default="Europe/Moscow", description="The program's time zone.")
    quiet_start: time | None = Field(default=None, description="e.g. 22:00; unset = no quiet.")
    quiet_end: time | None = Field(default=None, description="e.g. 09:00.")
    scheduler_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="Timer, under traffic too: delayed messages due, undelivered outbox rows.",
    )
    outbox_retry_after_s: float = Field(
        default=10.0,
        gt=0,
        description="An outbox record still unpublished this long after its commit is sent "
        "again while running.",
    )

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def group(self, consumer: str) -> str:
        return f"{self.group_prefix}.{consumer}"

    def provider_url(self, channel: str) -> str:
        return {"sms": self.sms_url, "push": self.push_url, "viber": self.viber_url}[channel]
