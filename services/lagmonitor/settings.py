"""The lag monitor's one settings class (env prefix ``LAGMONITOR_``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode

from services.lagmonitor.throughput import ServiceTarget
from services.runtime.settings import SchemaName, ServiceSettings, service_config


class LagMonitorSettings(ServiceSettings, BaseSettings):
    """How often to sample, how long a window Burrow's rules look at, which groups to watch.

    ``LAGMONITOR_KAFKA__BOOTSTRAP_SERVERS`` points the monitor alone at another
    cluster; plain ``KAFKA_*`` configures it like every other service.
    """

    model_config = service_config("LAGMONITOR_")

    cluster: str = Field(
        default="local",
        min_length=1,
        description="The cluster_name label on every Kafka series (one monitor per cluster).",
    )
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
        default=1800.0,
        gt=0,
        description="Seconds of history the dashboard's charts show (and PostgreSQL keeps).",
    )
    history_db: bool = Field(
        default=True,
        description=(
            "Keep the chart history in PostgreSQL (DATABASE_URL) so it survives a restart; "
            "without a reachable database it is kept in memory only."
        ),
    )
    db_schema: SchemaName = Field(
        default="lagmonitor",
        description="PostgreSQL schema of the chart history.",
    )
    request_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description=(
            "Admin request timeout. A broker that does not answer is reported after at "
            "most one interval plus this, so keep it at or below the interval."
        ),
    )
    services: Annotated[tuple[ServiceTarget, ...], NoDecode] = Field(
        default=(),
        description=(
            "Services whose /metrics to scrape for throughput and up/down, as "
            "name=url pairs, comma-separated: collector=http://127.0.0.1:8082,..."
        ),
    )
    service_timeout_s: float = Field(
        default=2.0, gt=0, description="Seconds to wait for one service's /metrics."
    )
    host: str = Field(
        default="127.0.0.1", description="Bind address; 0.0.0.0 to be scraped from other hosts."
    )
    port: int = Field(default=9308, ge=0, le=65535)

    @field_validator("group_prefixes", mode="before")
    @classmethod
    def _split_prefixes(cls, value: object) -> object:
        """The environment gives ``a,b``; code gives a sequence."""
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("services", mode="before")
    @classmethod
    def _parse_services(cls, value: object) -> object:
        """``name=url,name=url`` from the environment; a clear error for anything else."""
        if not isinstance(value, str):
            return value
        targets: list[ServiceTarget] = []
        for part in (p.strip() for p in value.split(",")):
            if not part:
                continue
            name, sep, url = (x.strip() for x in part.partition("="))
            if not sep or not name or not url.startswith(("http://", "https://")):
                raise ValueError(
                    f"services: {part!r} is not name=http://host:port "
                    "(e.g. collector=http://127.0.0.1:8082)"
                )
            if any(t.name == name for t in targets):
                raise ValueError(f"services: {name!r} is listed twice")
            targets.append(ServiceTarget(name, url))
        return tuple(targets)

    @property
    def stop_after_s(self) -> float:
        """A partition with lag and no commit for longer than the window is STOPped."""
        return self.window_size * self.sample_interval_s
