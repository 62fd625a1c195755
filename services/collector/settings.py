"""The collector's one settings class (env prefix ``COLLECTOR_``).

Groups are not settings: they live in a YAML file (``groups.py``) because there
are many of them and each has its own credentials, interval and window. Secrets
are never in that file either; it names the environment variables that hold them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings

from services.runtime.settings import SchemaName, ServiceSettings, service_config

SNAPSHOT_MAX_MESSAGE_BYTES = 8 * 1024 * 1024
"""``max.message.bytes`` of ``social.snapshots`` in the topic catalog (topics.py)."""


class CollectorSettings(ServiceSettings, BaseSettings):
    """Where the collector keeps its run history, and how it publishes.

    ``COLLECTOR_KAFKA__BOOTSTRAP_SERVERS`` points the collector alone at another
    cluster; plain ``KAFKA_*``, ``DATABASE_URL`` and ``TOPIC_PREFIX`` configure it
    like every other service.
    """

    model_config = service_config("COLLECTOR_")

    db_schema: SchemaName = Field(
        default="collector", description="PostgreSQL schema of the run history."
    )
    groups_file: Path | None = Field(
        default=None, description="YAML file of the groups to collect (see groups.example.yaml)."
    )
    http_host: str = Field(default="127.0.0.1", description="Health and metrics endpoints.")
    http_port: int = Field(default=8082, ge=0, le=65535)
    max_message_bytes: int = Field(
        default=SNAPSHOT_MAX_MESSAGE_BYTES,
        ge=1024,
        description="A run fails rather than produce a snapshot larger than this; keep it at "
        "the topic's max.message.bytes.",
    )
    max_member_drop: float = Field(
        default=0.2,
        gt=0,
        le=1,
        description="A run whose member count fell by more than this fraction since the group's "
        "last succeeded run publishes nothing (aborted), unless the group sets allow_mass_leave.",
    )
    max_concurrent_runs: int = Field(
        default=4, ge=1, description="Groups collected at the same time by one process."
    )
    transactional_id_prefix: str = Field(
        default="social-loyalty.collector",
        description="transactional.id = <prefix>.<topic prefix><network>.<group_id>: stable "
        "per group, so a restarted collector fences its zombie.",
    )
    transaction_timeout_s: float = Field(default=60.0, gt=0)
    shutdown_grace_s: float = Field(
        default=30.0, ge=0, description="How long a SIGTERM waits for running runs to finish."
    )
