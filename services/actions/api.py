"""The read API on the actions service's HTTP edge (port 8086 by default):

* ``GET /v1/members/{id}/balance`` -> ``{"member_id", "balance", "entries", "updated_at"}``
* ``GET /v1/members/{id}/entries?limit=50`` -> newest first, at most 1000
* ``GET /v1/members/{id}/deliveries?limit=50`` -> notification rows, newest first

plus ``/healthz``, ``/readyz`` and ``/metrics`` from the shared edge.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import psycopg
from aiohttp import web
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from services.actions.settings import ActionsSettings
from services.runtime.http import ReadyCheck, create_app

MAX_LIMIT = 1000
_POOL: web.AppKey[AsyncConnectionPool] = web.AppKey("pool", AsyncConnectionPool)


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", "50")
    try:
        limit = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(
            text=f'{{"error": "limit must be an integer, got {raw!r}"}}',
            content_type="application/json",
        ) from None
    if not 1 <= limit <= MAX_LIMIT:
        raise web.HTTPBadRequest(
            text=f'{{"error": "limit must be between 1 and {MAX_LIMIT}"}}',
            content_type="application/json",
        )
    return limit


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


def create_api(settings: ActionsSettings, ready: ReadyCheck | None = None) -> web.Application:
    app = create_app("actions", ready)
    schema = settings.db_schema

    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        await conn.commit()

    async def pool_context(app: web.Application) -> AsyncIterator[None]:
        pool: AsyncConnectionPool = AsyncConnectionPool(
            settings.database.database_url.get_secret_value(),
            min_size=1,
            max_size=4,
            open=False,
            configure=configure,
            kwargs={"autocommit": True, "row_factory": dict_row},
        )
        await pool.open()
        app[_POOL] = pool
        yield
        await pool.close()

    async def balance(request: web.Request) -> web.Response:
        member = request.match_info["member_id"]
        async with request.app[_POOL].connection() as conn:
            cursor = await conn.execute(
                "SELECT a.balance, a.updated_at, "
                "(SELECT count(*) FROM entries e WHERE e.member_id = a.member_id) AS entries "
                "FROM accounts a WHERE a.member_id = %s",
                (member,),
            )
            row: Any = await cursor.fetchone()
        if row is None:
            return web.json_response(
                {"member_id": member, "balance": 0, "entries": 0, "updated_at": None}
            )
        return web.json_response({"member_id": member, **_jsonable(row)})

    async def entries(request: web.Request) -> web.Response:
        member, limit = request.match_info["member_id"], _limit(request)
        async with request.app[_POOL].connection() as conn:
            cursor = await conn.execute(
                "SELECT command_id, points, requested, shortfall, balance_after, offer_id, "
                "source_event_id, reverses, reason, replay, issued_at, applied_at "
                "FROM entries WHERE member_id = %s ORDER BY seq DESC LIMIT %s",
                (member, limit),
            )
            rows: list[Any] = await cursor.fetchall()
        return web.json_response({"member_id": member, "entries": [_jsonable(row) for row in rows]})

    async def deliveries(request: web.Request) -> web.Response:
        member, limit = request.match_info["member_id"], _limit(request)
        async with request.app[_POOL].connection() as conn:
            cursor = await conn.execute(
                "SELECT command_id, channel, template_id, marketing, status, attempts, reason, "
                "send_after, created_at, updated_at FROM deliveries WHERE member_id = %s "
                "ORDER BY created_at DESC LIMIT %s",
                (member, limit),
            )
            rows: list[Any] = await cursor.fetchall()
        return web.json_response(
            {"member_id": member, "deliveries": [_jsonable(row) for row in rows]}
        )

    app.cleanup_ctx.append(pool_context)
    app.router.add_get("/v1/members/{member_id}/balance", balance)
    app.router.add_get("/v1/members/{member_id}/entries", entries)
    app.router.add_get("/v1/members/{member_id}/deliveries", deliveries)
    return app
