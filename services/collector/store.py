"""PostgreSQL: run history and the per-group run lock.

Everything lives in the collector's own schema (``COLLECTOR_DB_SCHEMA``), brought up to
date at start by the versioned migrations in ``migrations/``. The run lock is a
session-level advisory lock held on a connection of its own for the whole run, so two
processes (or two scheduler ticks) can never collect one group at once, and a crashed
process releases it when its connection dies.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from services.runtime.db import DatabaseUnavailableError
from services.runtime.migrations import migrate_async
from services.runtime.settings import DatabaseSettings

RunStatus = Literal["running", "succeeded", "failed", "aborted"]


def _lock_key(*parts: object) -> int:
    """A signed 64-bit advisory lock key, stable across processes and Python versions."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def now_millis() -> datetime:
    """Now, in UTC, at the millisecond precision the contract's timestamps carry."""
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond - moment.microsecond % 1000)


async def connect(
    settings: DatabaseSettings, *, autocommit: bool = True
) -> psycopg.AsyncConnection[Any]:
    """An async connection, or a clear error naming the fix (runtime.db is sync only)."""
    try:
        return await psycopg.AsyncConnection.connect(
            settings.database_url.get_secret_value(),
            autocommit=autocommit,
            connect_timeout=settings.connect_timeout_s,
        )
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError(
            f"PostgreSQL did not accept a connection ({str(exc).strip()}). "
            "Check DATABASE_URL, or start the local stack with `./run stack start`."
        ) from exc


async def migrate(conn: psycopg.AsyncConnection[Any], schema: str) -> None:
    """Apply the collector's migrations (``services/collector/migrations``) the schema
    has not had yet; serialised so parallel starts do not race."""
    await migrate_async(conn, schema, "collector")


class GroupBusyError(RuntimeError):
    """Another run of the group holds its lock (here or in another process)."""


@asynccontextmanager
async def group_lock(
    settings: DatabaseSettings, schema: str, network: str, group_id: int
) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """Hold the group's run lock for the block; ``GroupBusyError`` if someone else has it."""
    conn = await connect(settings)
    try:
        key = _lock_key("collector-run", schema, network, group_id)
        row = await (await conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))).fetchone()
        if not row or not row[0]:
            raise GroupBusyError(f"a run of {network}:{group_id} is already in progress")
        try:
            yield conn
        finally:
            if not conn.closed:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
    finally:
        await conn.close()


@dataclass(frozen=True)
class RunStart:
    run_id: str
    snapshot_at: datetime
    baseline_at: datetime
    expected_members: int | None
    rebaselined: bool
    """True when this run starts a new baseline although the group ran before."""
    baseline_post_id: int | None = None
    """The highest post id the baseline run saw, carried like ``baseline_at``; ``None``
    on a baseline run (it is what this run will read) and for a baseline recorded
    before the column existed."""

    @property
    def baseline(self) -> bool:
        return self.snapshot_at == self.baseline_at


@dataclass(frozen=True)
class RunStats:
    api_requests: int = 0
    api_calls: int = 0
    objects_read: int = 0
    members: int | None = None
    errors_by_code: Mapping[int, int] | None = None
    skipped: Sequence[Mapping[str, object]] = ()
    messages_published: int = 0
    baseline_post_id: int | None = None
    """A baseline run's highest post id, recorded for the runs after it (never unset)."""
    snapshot_at: datetime | None = None
    """When the run's reads were done: the time its chunks carry (``None``: keep the
    start time, for a run that published nothing)."""
    baseline_at: datetime | None = None
    """The baseline the chunks carried (a baseline run's own read time)."""


class RunStore:
    """Run history of one schema, over a connection the caller owns (autocommit)."""

    def __init__(self, conn: psycopg.AsyncConnection[Any], schema: str) -> None:
        self._conn = conn
        self._runs = sql.SQL("{}.runs").format(sql.Identifier(schema))

    async def start(self, network: str, group_id: int, bucket_count: int) -> RunStart:
        """Record a new running run; call with the group lock held.

        Rows still ``running`` for the group belong to a process that died (we hold the
        lock), so they are closed as failed first. ``baseline_at`` (and the baseline's
        highest post id) is carried from the last succeeded run; a first run, or a
        changed ``bucket_count``, starts a new one.
        """
        started = now_millis()
        await self._conn.execute(
            sql.SQL(
                "UPDATE {} SET status = 'failed', ended_at = %s, "
                "reason = 'the collector process ended during the run' "
                "WHERE network = %s AND group_id = %s AND status = 'running'"
            ).format(self._runs),
            (started, network, group_id),
        )
        cur = await self._conn.execute(
            sql.SQL(
                "SELECT baseline_at, bucket_count, members, baseline_post_id FROM {} "
                "WHERE network = %s AND group_id = %s AND status = 'succeeded' "
                "ORDER BY started_at DESC LIMIT 1"
            ).format(self._runs),
            (network, group_id),
        )
        last = await cur.fetchone()
        same_buckets = last is not None and last[1] == bucket_count
        baseline_at = last[0] if last is not None and same_buckets else started
        baseline_post_id = last[3] if last is not None and same_buckets else None
        stamp = started.strftime("%Y%m%dT%H%M%S%f")[:-3]
        run_id = f"{network}-{group_id}-{stamp}-{uuid.uuid4().hex[:6]}"
        await self._conn.execute(
            sql.SQL(
                "INSERT INTO {} (run_id, network, group_id, started_at, snapshot_at, baseline_at, "
                "status, bucket_count, baseline_post_id) "
                "VALUES (%s, %s, %s, %s, %s, %s, 'running', %s, %s)"
            ).format(self._runs),
            (
                run_id,
                network,
                group_id,
                started,
                started,
                baseline_at,
                bucket_count,
                baseline_post_id,
            ),
        )
        return RunStart(
            run_id=run_id,
            snapshot_at=started,
            baseline_at=baseline_at.astimezone(UTC),
            expected_members=None if last is None else last[2],
            rebaselined=last is not None and not same_buckets,
            baseline_post_id=baseline_post_id,
        )

    async def finish(
        self, run_id: str, status: RunStatus, stats: RunStats, reason: str | None = None
    ) -> None:
        errors = {str(code): n for code, n in (stats.errors_by_code or {}).items()}
        await self._conn.execute(
            sql.SQL(
                "UPDATE {} SET status = %s, ended_at = %s, reason = %s, api_requests = %s, "
                "api_calls = %s, objects_read = %s, members = %s, errors_by_code = %s, "
                "skipped = %s, messages_published = %s, "
                "baseline_post_id = COALESCE(baseline_post_id, %s), "
                "snapshot_at = COALESCE(%s, snapshot_at), baseline_at = COALESCE(%s, baseline_at) "
                "WHERE run_id = %s"
            ).format(self._runs),
            (
                status,
                now_millis(),
                reason,
                stats.api_requests,
                stats.api_calls,
                stats.objects_read,
                stats.members,
                json.dumps(errors),
                json.dumps(list(stats.skipped)),
                stats.messages_published,
                stats.baseline_post_id,
                stats.snapshot_at,
                stats.baseline_at,
                run_id,
            ),
        )

    async def recent(
        self, limit: int = 20, network: str | None = None, group_id: int | None = None
    ) -> list[dict[str, Any]]:
        where = sql.SQL("")
        params: list[object] = []
        if network is not None and group_id is not None:
            where = sql.SQL("WHERE network = %s AND group_id = %s")
            params = [network, group_id]
        params.append(limit)
        async with self._conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                sql.SQL("SELECT * FROM {} {} ORDER BY started_at DESC LIMIT %s").format(
                    self._runs, where
                ),
                params,
            )
            return list(await cur.fetchall())

    async def get(self, run_id: str) -> dict[str, Any] | None:
        async with self._conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                sql.SQL("SELECT * FROM {} WHERE run_id = %s").format(self._runs), (run_id,)
            )
            return await cur.fetchone()
