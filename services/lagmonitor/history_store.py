"""The PostgreSQL edge of the chart history: points survive a restart, and stay bounded.

One row per successful sample (``{schema}.lag_history``, migration
``services/lagmonitor/migrations``): the point as JSON, keyed by cluster and
time, so monitors of different clusters can share a schema. Each save also
deletes the cluster's rows older than the history window, so the table holds
what the page can show and no more.

The database is a convenience, not a dependency: a monitor that cannot reach it
keeps its history in memory, logs why, and tries again at most every
``RETRY_S`` seconds.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from services.lagmonitor.chart_history import HistoryPoint, point_from_json, point_to_json
from services.runtime import migrations

log = logging.getLogger(__name__)

COMPONENT = "lagmonitor"
RETRY_S = 30.0


class HistoryStore:
    """Loads and saves the chart history of one cluster in one schema."""

    def __init__(
        self,
        url: str,
        schema: str,
        cluster: str,
        keep_s: float,
        *,
        connect_timeout_s: int = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._schema = schema
        self._cluster = cluster
        self.keep_s = keep_s
        self._connect_timeout_s = connect_timeout_s
        self._clock = clock
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._next_try = 0.0
        self.error: str | None = None
        """Why the last database call failed, or ``None``."""

    def _table(self) -> sql.Composed:
        return sql.SQL("{}.lag_history").format(sql.Identifier(self._schema))

    async def _connection(self) -> psycopg.AsyncConnection[Any] | None:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        if self._clock() < self._next_try:
            return None
        try:
            self._conn = await psycopg.AsyncConnection.connect(
                self._url, autocommit=True, connect_timeout=self._connect_timeout_s
            )
            await migrations.migrate_async(self._conn, self._schema, COMPONENT)
        except (psycopg.Error, OSError) as exc:
            await self._failed(exc)  # closes a connection that could not migrate
            return None
        return self._conn

    async def _failed(self, exc: BaseException) -> None:
        first_line = (str(exc).strip().splitlines() or [""])[0]
        reason = f"{type(exc).__name__}: {first_line}"
        if reason != self.error:
            log.warning("lag history not kept in PostgreSQL (%s); in memory only", reason)
        self.error = reason
        self._next_try = self._clock() + RETRY_S
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()

    async def load(self, now: float) -> list[HistoryPoint]:
        """The cluster's points of the last ``keep_s`` seconds before ``now``, oldest first."""
        conn = await self._connection()
        if conn is None:
            return []
        query = sql.SQL(
            "SELECT point FROM {} WHERE cluster = %s AND sampled_at >= %s ORDER BY sampled_at"
        ).format(self._table())
        try:
            cursor = await conn.execute(query, (self._cluster, now - self.keep_s))
            rows = await cursor.fetchall()
        except psycopg.Error as exc:
            await self._failed(exc)
            return []
        self.error = None
        return [point_from_json(row[0]) for row in rows]

    async def save(self, point: HistoryPoint) -> bool:
        """Store one point and prune what fell out of the window; ``False`` if not stored."""
        conn = await self._connection()
        if conn is None:
            return False
        insert = sql.SQL(
            "INSERT INTO {} (cluster, sampled_at, point) VALUES (%s, %s, %s) "
            "ON CONFLICT (cluster, sampled_at) DO UPDATE SET point = EXCLUDED.point"
        ).format(self._table())
        prune = sql.SQL("DELETE FROM {} WHERE cluster = %s AND sampled_at < %s").format(
            self._table()
        )
        try:
            async with conn.transaction():
                await conn.execute(insert, (self._cluster, point.time, Jsonb(point_to_json(point))))
                await conn.execute(prune, (self._cluster, point.time - self.keep_s))
        except psycopg.Error as exc:
            await self._failed(exc)
            return False
        self.error = None
        return True

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
