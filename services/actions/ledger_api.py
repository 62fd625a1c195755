"""The ledger read API (FastAPI) on the actions service's HTTP edge (port 8086 by default):

* ``GET /v1/members/{id}/balance`` -> ``{"member_id", "balance", "entries", "updated_at"}``
* ``GET /v1/members/{id}/entries?limit=50`` -> newest first, at most 1000
* ``GET /v1/members/{id}/deliveries?limit=50`` -> notification rows, newest first

plus ``/healthz``, ``/readyz`` and ``/metrics``, the OpenAPI 3.1 document
(``/openapi.json``) and the docs page (``/docs``) from the shared API edge
(``services.runtime.httpapi``). A bad member id or ``limit`` answers 400. The /v1
routes need a signed credential with the ``ledger:read`` scope (docs/security.md).

PostgreSQL is probed in the background: while it is unreachable ``/readyz`` and every
/v1 route answer 503 with ``Retry-After``; its pool checks a connection before handing
it out, and a read whose connection broke under it runs once more, so a restart of
PostgreSQL never surfaces as a 500.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Final

import psycopg
from fastapi import Depends, FastAPI, Path, Query
from fastapi.responses import JSONResponse
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

from services.actions.settings import ActionsSettings
from services.contracts.bounds import MEMBER_ID_PATTERN
from services.runtime import health, pgpool
from services.runtime.access import AccessGate, require
from services.runtime.http import ReadyCheck
from services.runtime.httpapi import create_api

MAX_LIMIT: Final = 1000
MAX_BODY: Final = 1024
"""The read API takes no bodies."""

MemberIdPath = Annotated[str, Path(pattern=MEMBER_ID_PATTERN, description="The member's id.")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Newest first, at most this many.")]


class Balance(BaseModel):
    member_id: str
    balance: int
    entries: int
    updated_at: str | None


class Entry(BaseModel):
    command_id: str
    points: int
    requested: int | None = None
    shortfall: int | None = None
    balance_after: int
    offer_id: str | None = None
    source_event_id: str | None = None
    reverses: str | None = None
    reason: str | None = None
    replay: bool | None = None
    issued_at: str | None = None
    applied_at: str | None = None


class Entries(BaseModel):
    member_id: str
    entries: list[Entry]


class Delivery(BaseModel):
    command_id: str
    channel: str
    template_id: str | None = None
    marketing: bool | None = None
    status: str
    attempts: int
    reason: str | None = None
    send_after: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class Deliveries(BaseModel):
    member_id: str
    deliveries: list[Delivery]


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


def create_api_app(settings: ActionsSettings, ready: ReadyCheck | None = None) -> FastAPI:
    """The ledger's read API on the shared API edge; a bad member id or limit is a 400.
    ``ready`` is the consumers' readiness; the API adds PostgreSQL's."""
    schema = settings.db_schema
    pools: list[AsyncConnectionPool] = []

    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        await conn.commit()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        pool = pgpool.api_pool(
            settings.database,
            name="ledger-api",
            max_size=4,
            configure=configure,
            row_factory=dict_row,
        )
        await pool.open()
        pools.append(pool)
        try:
            yield
        finally:
            await pool.close()

    app = create_api(
        "actions",
        ready,
        title="social-loyalty ledger API",
        description="Members' bonus balances, ledger entries and notification deliveries.",
        lifespan=lifespan,
        max_body=MAX_BODY,
        invalid_status=400,
        access=AccessGate(settings.access, settings.database),
        dependencies=health.Dependencies(health.probes(database=settings.database)),
    )
    ledger: dict[str, Any] = {"tags": ["ledger"], "dependencies": [Depends(require("ledger:read"))]}

    async def rows(query: str, *args: Any) -> list[Any]:
        async def fetch(conn: psycopg.AsyncConnection[Any]) -> list[Any]:
            cursor = await conn.execute(query, args)
            return await cursor.fetchall()

        return await pgpool.read(pools[0], fetch)

    @app.get("/v1/members/{member_id}/balance", **ledger, response_model=Balance)
    async def balance(member_id: MemberIdPath) -> JSONResponse:
        """The member's balance (0 with no entries)."""
        found = await rows(
            "SELECT a.balance, a.updated_at, "
            "(SELECT count(*) FROM entries e WHERE e.member_id = a.member_id) AS entries "
            "FROM accounts a WHERE a.member_id = %s",
            member_id,
        )
        if not found:
            return JSONResponse(
                {"member_id": member_id, "balance": 0, "entries": 0, "updated_at": None}
            )
        return JSONResponse({"member_id": member_id, **_jsonable(found[0])})

    @app.get("/v1/members/{member_id}/entries", **ledger, response_model=Entries)
    async def entries(member_id: MemberIdPath, limit: Limit = 50) -> JSONResponse:
        """Ledger entries, newest first."""
        found = await rows(
            "SELECT command_id, points, requested, shortfall, balance_after, offer_id, "
            "source_event_id, reverses, reason, replay, issued_at, applied_at "
            "FROM entries WHERE member_id = %s ORDER BY seq DESC LIMIT %s",
            member_id,
            limit,
        )
        return JSONResponse({"member_id": member_id, "entries": [_jsonable(r) for r in found]})

    @app.get("/v1/members/{member_id}/deliveries", **ledger, response_model=Deliveries)
    async def deliveries(member_id: MemberIdPath, limit: Limit = 50) -> JSONResponse:
        """Notification deliveries, newest first."""
        found = await rows(
            "SELECT command_id, channel, template_id, marketing, status, attempts, reason, "
            "send_after, created_at, updated_at FROM deliveries WHERE member_id = %s "
            "ORDER BY created_at DESC LIMIT %s",
            member_id,
            limit,
        )
        return JSONResponse({"member_id": member_id, "deliveries": [_jsonable(r) for r in found]})

    return app
