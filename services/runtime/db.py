"""PostgreSQL connections for the services (psycopg 3)."""

from __future__ import annotations

import psycopg

from services.runtime.settings import DatabaseSettings


class DatabaseUnavailableError(RuntimeError):
    """PostgreSQL did not accept a connection."""


def connect(settings: DatabaseSettings, *, autocommit: bool = False) -> psycopg.Connection:
    """A connection, or a clear error naming the fix; never a long hang."""
    url = settings.database_url.get_secret_value()
    try:
        return psycopg.connect(
            url, autocommit=autocommit, connect_timeout=settings.connect_timeout_s
        )
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError(
            f"PostgreSQL did not accept a connection ({str(exc).strip()}). "
            "Check DATABASE_URL (or --database-url), or start the local stack with "
            "`./run stack start`."
        ) from exc
