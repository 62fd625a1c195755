"""The detector's one settings class (env prefix ``DETECTOR_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings

from services.contracts.topics import DETECTOR_APP_ID, TopicSettings
from services.runtime.settings import ServiceSettings, service_config


class DetectorSettings(ServiceSettings, BaseSettings):
    """The Faust worker's settings.

    Plain ``KAFKA_*``, ``DATABASE_URL`` and ``TOPIC_PREFIX`` configure it like every
    other service; ``DETECTOR_KAFKA__BOOTSTRAP_SERVERS`` points the detector alone
    elsewhere.
    """

    model_config = service_config("DETECTOR_")

    app_id: str = Field(
        default=DETECTOR_APP_ID,
        description="Faust app id: the consumer group and the stem of its internal topics. "
        "Unset, it is TOPIC_PREFIX + social-loyalty.detector, the name `topics ensure` uses.",
    )

    @model_validator(mode="before")
    @classmethod
    def _prefixed_app_id(cls, data: Any) -> Any:
        """Faust names its topics after the app id and knows no prefix, so the default
        app id carries ``TOPIC_PREFIX``: two prefixed environments never share them."""
        if isinstance(data, dict) and not data.get("app_id"):
            topics = data.get("topics")
            if not isinstance(topics, TopicSettings):
                topics = TopicSettings(**(topics or {}))
            data = {**data, "app_id": topics.name(DETECTOR_APP_ID)}
        return data

    store: Literal["rocksdb://", "memory://"] = Field(
        default="rocksdb://",
        description="Table store; memory:// rebuilds from the changelog on every start.",
    )
    data_dir: Path = Field(
        default=Path("deploy/.local/detector"), description="Where RocksDB keeps the table locally."
    )
    worker_host: str = "127.0.0.1"
    worker_port: int = Field(
        default=6066, ge=0, le=65535, description="Worker /healthz /readyz /metrics (0: any)."
    )
    session_timeout_s: float = Field(
        default=60.0,
        gt=0,
        le=90,
        description="Kafka group session timeout: how soon a dead worker's partitions move.",
    )
    flush_timeout_s: float = Field(
        default=60.0, gt=0, description="How long to wait for the broker to ack a chunk's events."
    )
    commit_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="Seconds between Faust's offset commits (and after every 100 records). "
        "Longer than a commit takes on a loaded machine (1.4 s seen in the demo), or Faust "
        "logs 'Timer commit is overlapping' and commits back to back.",
    )
