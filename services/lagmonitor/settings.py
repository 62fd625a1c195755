"""The lag monitor's one settings class (env prefix ``LAGMONITOR_``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from services.runtime.settings import KafkaSettings


class LagMonitorSettings(BaseSettings):
    """How often to sample, how long a window Burrow's rules look at, which groups to watch.

    ``LAGMONITOR_KAFKA__BOOTSTRAP_SERVERS`` points the monitor alone at another
    cluster; plain ``KAFKA_*`` configures it like every other service.
    """

    model_config = SettingsConfigDict(
        env_prefix="LAGMONITOR_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    sample_interval_s: float = Field(
        default=5.0, gt=0, description="Seconds between two samples of the cluster."
    )
    window_size: int = Field(
        default=10,
        ge=2,
        description="Observations per partition Burrow's rules evaluate (the sliding window).",
    )
    lookup_table_size: int = Field(
        default=64,
        ge=3,
        description="Points (end offset, time) kept per partition for time-lag interpolation.",
    )
    group_prefixes: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("social-loyalty",),
        description="Watch groups whose id starts with one of these (comma-separated in env).",
    )
    all_groups: bool = Field(default=False, description="Watch every group on the cluster.")
    sample_stable_offsets: bool = Field(
        default=True,
        description="Also read the last stable offset (read_committed end) of each partition.",
    )
    history_s: float = Field(
        default=1800.0, gt=0, description="Seconds of history the dashboard's charts show."
    )
    request_timeout_s: float = Field(default=10.0, gt=0)
    host: str = "0.0.0.0"  # noqa: S104 - a metrics endpoint is scraped from other hosts
    port: int = Field(default=9308, ge=0, le=65535)

    @field_validator("group_prefixes", mode="before")
    @classmethod
    def _split_prefixes(cls, value: object) -> object:
        """The environment gives ``a,b``; code gives a sequence."""
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @property
    def stop_after_s(self) -> float:
        """A partition with lag and no commit for longer than the window is STOPped."""
        return self.window_size * self.sample_interval_s
