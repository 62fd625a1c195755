"""The credentials and nonces tables (schema ``ACCESS_DB_SCHEMA``): synchronous calls
for the CLI and ``ensure_credential``, asynchronous ones for the APIs' gate."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from services.runtime import migrations
from services.runtime.access.signing import CredentialError, check_scopes, new_key

COMPONENT: Final = "access"
MAX_NAME: Final = 100


@dataclass(frozen=True)
class Credential:
    """A credential as the database has it: no private key, ever."""

    key_id: str
    name: str
    scopes: tuple[str, ...]
    public_key: bytes
    created_at: datetime
    revoked_at: datetime | None

    def public(self) -> dict[str, Any]:
        """What ``credentials list`` shows."""
        return {
            "key_id": self.key_id,
            "name": self.name,
            "scopes": list(self.scopes),
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


_COLUMNS: Final = "key_id, name, scopes, public_key, created_at, revoked_at"


def _credential(row: tuple[Any, ...]) -> Credential:
    key_id, name, scopes, public_key, created_at, revoked_at = row
    return Credential(key_id, name, tuple(scopes), bytes(public_key), created_at, revoked_at)


def _q(text: str, schema: str) -> sql.Composed:
    return sql.SQL(text).format(schema=sql.Identifier(schema))


def check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise CredentialError(f"a name is 1-{MAX_NAME} printable characters")
    return name


# ------------------------------------------------------------------ sync (CLI)


def migrate(conn: psycopg.Connection[Any], schema: str) -> list[str]:
    return migrations.migrate(conn, schema, COMPONENT)


def create(
    conn: psycopg.Connection[Any], schema: str, name: str, scopes: list[str] | tuple[str, ...]
) -> tuple[Credential, str]:
    """A new credential and its secret (the only time the secret exists outside the
    caller's hands)."""
    name, checked = check_name(name), check_scopes(scopes)
    key = new_key()
    cursor = conn.cursor(row_factory=tuple_row)
    row = cursor.execute(
        _q(
            "INSERT INTO {schema}.credentials (key_id, name, scopes, public_key) "
            f"VALUES (%s, %s, %s, %s) RETURNING {_COLUMNS}",
            schema,
        ),
        (key.key_id, name, list(checked), key.public_key),
    ).fetchone()
    assert row is not None
    conn.commit()
    return _credential(row), key.secret


def list_all(conn: psycopg.Connection[Any], schema: str) -> list[Credential]:
    cursor = conn.cursor(row_factory=tuple_row)
    rows = cursor.execute(
        _q(f"SELECT {_COLUMNS} FROM {{schema}}.credentials ORDER BY created_at, key_id", schema)
    ).fetchall()
    return [_credential(r) for r in rows]


def revoke(conn: psycopg.Connection[Any], schema: str, key_id: str) -> Credential | None:
    """Revoke ``key_id`` (a second revoke keeps the first time); None: no such key."""
    cursor = conn.cursor(row_factory=tuple_row)
    row = cursor.execute(
        _q(
            "UPDATE {schema}.credentials SET revoked_at = coalesce(revoked_at, now()) "
            f"WHERE key_id = %s RETURNING {_COLUMNS}",
            schema,
        ),
        (key_id,),
    ).fetchone()
    conn.commit()
    return None if row is None else _credential(row)


# ------------------------------------------------------------------ async (the gate)


async def migrate_async(conn: psycopg.AsyncConnection[Any], schema: str) -> list[str]:
    return await migrations.migrate_async(conn, schema, COMPONENT)


async def lookup(conn: psycopg.AsyncConnection[Any], schema: str, key_id: str) -> Credential | None:
    cursor = conn.cursor(row_factory=tuple_row)
    await cursor.execute(
        _q(f"SELECT {_COLUMNS} FROM {{schema}}.credentials WHERE key_id = %s", schema), (key_id,)
    )
    row = await cursor.fetchone()
    return None if row is None else _credential(row)


async def use_nonce(
    conn: psycopg.AsyncConnection[Any], schema: str, key_id: str, nonce: str, keep_until: int
) -> bool:
    """Record the nonce; False when that key used it before (a replay)."""
    cursor = await conn.execute(
        _q(
            "INSERT INTO {schema}.nonces (key_id, nonce, expires_at) "
            "VALUES (%s, %s, to_timestamp(%s)) ON CONFLICT DO NOTHING",
            schema,
        ),
        (key_id, nonce, keep_until),
    )
    return cursor.rowcount == 1


async def purge_nonces(conn: psycopg.AsyncConnection[Any], schema: str, margin_s: int) -> int:
    """Forget nonces whose request time window ended (plus ``margin_s`` for clocks)."""
    cursor = await conn.execute(
        _q(
            "DELETE FROM {schema}.nonces WHERE expires_at < now() - make_interval(secs => %s)",
            schema,
        ),
        (margin_s,),
    )
    return cursor.rowcount
