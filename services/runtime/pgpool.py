"""The connection pools of the HTTP APIs (psycopg_pool), built one way.

A pool keeps connections across requests, so a PostgreSQL restart leaves it holding
connections that died; handed out as they are, the next request fails on them (the
ledger and link APIs answered 500 ``AdminShutdown``). So every pool here checks a
connection on checkout (an empty query) and replaces a dead one, waits at most
``WAIT_S`` for a connection (then ``PoolTimeout``, which the API answers 503), and
gives up reconnecting in the background after ``RECONNECT_S``: psycopg_pool backs off
exponentially, and a pool still sleeping after a long outage would keep answering 503
after PostgreSQL returned, while a pool that gave up grows again at the next request.

:func:`read` runs a read once more on a fresh connection when the first one broke under
it; a write is never repeated (it may have been committed before the connection died).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from services.runtime.db import DatabaseUnavailableError
from services.runtime.settings import DatabaseSettings

T = TypeVar("T")

WAIT_S: Final = 5.0
"""How long a request waits for a connection before it answers 503."""
RECONNECT_S: Final = 10.0
"""How long the pool keeps reconnecting in the background before it waits for a request."""

UNAVAILABLE: Final = (psycopg.OperationalError, PoolTimeout, DatabaseUnavailableError)
"""What a request meets when PostgreSQL is down, restarting or unreachable."""

Configure = Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]


def api_pool(
    database: DatabaseSettings,
    *,
    name: str,
    max_size: int,
    configure: Configure | None = None,
    **kwargs: Any,
) -> AsyncConnectionPool:
    """A closed pool (``await pool.open(...)`` in the app's lifespan) of autocommit
    connections, checked on checkout; ``kwargs`` go to ``psycopg.AsyncConnection.connect``."""
    return AsyncConnectionPool(
        database.database_url.get_secret_value(),
        min_size=1,
        max_size=max_size,
        name=name,
        open=False,
        configure=configure,
        check=AsyncConnectionPool.check_connection,
        timeout=WAIT_S,
        reconnect_timeout=RECONNECT_S,
        kwargs={"autocommit": True, "connect_timeout": database.connect_timeout_s, **kwargs},
    )


async def read(
    pool: AsyncConnectionPool, query: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]
) -> T:
    """``query(conn)`` on a pooled connection, and once more on another one if the
    first broke while it ran (PostgreSQL restarted between the check and the query).
    Only for reads: nothing is known about a write whose connection broke."""
    async with pool.connection() as conn:
        try:
            return await query(conn)
        except psycopg.OperationalError:
            if not conn.broken:
                raise
    async with pool.connection() as conn:
        return await query(conn)
