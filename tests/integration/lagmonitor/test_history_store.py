"""The chart history survives a restart, stays bounded, and is per cluster (real PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Iterator

import psycopg
import pytest
from psycopg import sql
from pydantic import SecretStr

from services.lagmonitor.core import ClusterSample, GroupObservation
from services.lagmonitor.monitor import LagMonitor
from services.lagmonitor.sampler import Sampler
from services.lagmonitor.settings import LagMonitorSettings
from services.runtime.settings import DatabaseSettings

T = "social.events"
START = 1_700_000_000.0


class Samples(Sampler):
    """One sample per call, one second apart, the group's lag growing by one each time."""

    def __init__(self, start: float = START) -> None:
        self.at = start
        self.n = 0

    def sample(
        self, prefixes: Iterable[str] | None = None, *, all_groups: bool | None = None
    ) -> ClusterSample:
        self.n += 1
        self.at += 1
        group = GroupObservation("social-loyalty.rules", committed={(T, 0): 10})
        return ClusterSample(time=self.at, groups=(group,), end_offsets={(T, 0): 10 + self.n})


@pytest.fixture
def schema(database_url: str) -> Iterator[str]:
    name = f"t_lag_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def settings(database_url: str, schema: str, **kw: object) -> LagMonitorSettings:
    return LagMonitorSettings.model_validate(
        {
            "database": DatabaseSettings(database_url=SecretStr(database_url)),
            "db_schema": schema,
            "history_s": 60.0,
            **kw,
        }
    )


async def run_monitor(config: LagMonitorSettings, sampler: Samples, polls: int) -> LagMonitor:
    monitor = LagMonitor(config, sampler, clock=lambda: sampler.at)
    await monitor.restore_history()
    for _ in range(polls):
        await monitor.poll_once()
    await monitor.close()
    return monitor


def rows(database_url: str, schema: str) -> list[tuple[str, float]]:
    with psycopg.connect(database_url) as conn:
        query = sql.SQL("SELECT cluster, sampled_at FROM {}.lag_history ORDER BY 1, 2")
        return [(r[0], r[1]) for r in conn.execute(query.format(sql.Identifier(schema)))]


def test_a_restarted_monitor_shows_the_same_history(database_url: str, schema: str) -> None:
    sampler = Samples()
    first = asyncio.run(run_monitor(settings(database_url, schema), sampler, 3))
    assert first.history_json()["kept_in"] == "postgresql"
    before = first.history_json()["points"]
    assert [p["groups"]["social-loyalty.rules"]["lag"] for p in before] == [1, 2, 3]

    # A new process: nothing in memory, the same schema; it carries on from there.
    second = asyncio.run(run_monitor(settings(database_url, schema), sampler, 1))
    after = second.history_json()["points"]
    assert after[:3] == before
    assert [p["groups"]["social-loyalty.rules"]["lag"] for p in after] == [1, 2, 3, 4]
    assert [t for _, t in rows(database_url, schema)] == [
        START + 1,
        START + 2,
        START + 3,
        START + 4,
    ]


def test_rows_older_than_the_window_are_deleted_and_clusters_kept_apart(
    database_url: str, schema: str
) -> None:
    sampler = Samples()
    asyncio.run(run_monitor(settings(database_url, schema), sampler, 3))
    other = Samples()
    asyncio.run(run_monitor(settings(database_url, schema, cluster="eu-2"), other, 2))
    sampler.at += 120  # two windows later
    later = asyncio.run(run_monitor(settings(database_url, schema), sampler, 1))
    assert [p["t"] for p in later.history_json()["points"]] == [START + 124]
    assert rows(database_url, schema) == [
        ("eu-2", START + 1),
        ("eu-2", START + 2),
        ("local", START + 124),
    ]


def test_without_a_database_the_history_is_kept_in_memory(unused_port: int) -> None:
    url = f"postgresql://nobody@127.0.0.1:{unused_port}/none"
    monitor = asyncio.run(run_monitor(settings(url, "lagmonitor"), Samples(), 2))
    document = monitor.history_json()
    assert document["kept_in"] == "memory"
    assert "OperationalError" in document["error"]
    assert len(document["points"]) == 2


@pytest.fixture
def unused_port() -> int:
    from tests.integration.lagmonitor.test_dashboard_browser import free_port

    return free_port()
