"""The APIs' pools against a real PostgreSQL: a read whose connection is killed under it
runs once more on a new one; an error that leaves the connection alive is not retried."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from services.runtime.pgpool import api_pool, read
from services.runtime.settings import DatabaseSettings


def test_a_read_runs_once_more_when_its_connection_dies(
    database_settings: DatabaseSettings,
) -> None:
    calls: list[int] = []

    async def killed_once(conn: psycopg.AsyncConnection[Any]) -> int:
        calls.append(conn.info.backend_pid)
        if len(calls) == 1:
            await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        cursor = await conn.execute("SELECT 42")
        row = await cursor.fetchone()
        assert row is not None
        return int(row[0])

    async def main() -> None:
        async with api_pool(database_settings, name="t-read", max_size=2) as pool:
            assert await read(pool, killed_once) == 42
        assert len(calls) == 2 and calls[0] != calls[1]

    asyncio.run(main())


def test_an_error_on_a_live_connection_is_not_retried(database_settings: DatabaseSettings) -> None:
    calls: list[int] = []

    async def times_out(conn: psycopg.AsyncConnection[Any]) -> None:
        calls.append(1)
        await conn.execute("SET statement_timeout = 10")
        await conn.execute("SELECT pg_sleep(1)")

    async def main() -> None:
        async with api_pool(database_settings, name="t-read", max_size=2) as pool:
            with pytest.raises(psycopg.errors.QueryCanceled):
                await read(pool, times_out)
        assert calls == [1]

    asyncio.run(main())
