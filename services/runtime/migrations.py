"""Versioned PostgreSQL migrations: ordered SQL files and a version table, one mechanism
for every schema.

Each component keeps its migrations in ``services/<component>/migrations/`` as
``NNNN_what_it_does.sql`` (1, 2, 3, ... with no gaps), written with ``{schema}``
where the schema name goes (the schema is a setting, so tests and the demo each have
their own). ``migrate`` applies the files a schema has not had yet, in order, in one
transaction under an advisory lock, so several processes starting at once on a
fresh database do not race; it records each in ``{schema}.schema_migrations`` with
the file's SHA-256 and refuses to start when an applied file has since changed (a
migration is never edited once released: add the next one).

Several components may share a schema (the PostgreSQL-sink runtime's tables live
next to each service's own), so versions are kept per component. A migration
``0001`` is each component's baseline; it is written with ``IF NOT EXISTS``, so a
database made before the version table existed is adopted as it is.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

__all__ = ["Migration", "MigrationError", "load", "migrate", "migrate_async"]

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

COMPONENTS = {
    "pgsink": "services.runtime",
    "actions": "services.actions",
    "rules": "services.rules",
    "readmodel": "services.readmodel",
    "collector": "services.collector",
    "link": "services.link",
    "access": "services.runtime.access",
    "lagmonitor": "services.lagmonitor",
}
"""Component name -> the package whose ``migrations`` folder holds its files."""


class MigrationError(RuntimeError):
    """The migrations on disk and those applied to the schema disagree."""


@dataclass(frozen=True)
class Migration:
    component: str
    version: int
    name: str
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def statement(self, schema: str) -> sql.Composed:
        return sql.SQL(self.text).format(schema=sql.Identifier(schema))


def load(component: str) -> list[Migration]:
    """The component's migrations in order; refuses gaps and badly named files."""
    folder = resources.files(COMPONENTS[component]).joinpath("migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _NAME.match(entry.name)
        if match is None:
            raise MigrationError(f"{component}: {entry.name} is not named NNNN_name.sql")
        found.append(Migration(component, int(match[1]), match[2], entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"{component}: migrations must be numbered 1..n, found {versions}")
    return found


_VERSION_TABLE = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
    component  text NOT NULL,
    version    integer NOT NULL,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (component, version)
)
"""


def _lock_key(schema: str) -> int:
    digest = hashlib.blake2b(f"migrate:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _pending(
    component: str, applied: dict[int, tuple[str, str]], target: int | None
) -> list[Migration]:
    """The migrations still to apply, after checking the applied ones are unchanged."""
    migrations = load(component)
    for migration in migrations:
        done = applied.get(migration.version)
        if done is not None and done[1] != migration.checksum:
            raise MigrationError(
                f"{component} migration {migration.version:04d}_{done[0]} was changed after "
                "it was applied to this schema; restore it and add a new migration instead"
            )
    newer = sorted(v for v in applied if v > len(migrations))
    if newer:
        raise MigrationError(
            f"{component}: the schema has migration {newer[-1]}, newer than this code "
            f"knows ({len(migrations)}); run the newer release"
        )
    limit = len(migrations) if target is None else target
    return [m for m in migrations if m.version not in applied and m.version <= limit]


_APPLIED = "SELECT version, name, checksum FROM {schema}.schema_migrations WHERE component = %s"
_RECORD = "INSERT INTO {schema}.schema_migrations (component, version, name, checksum) VALUES "


def migrate(
    conn: psycopg.Connection[Any], schema: str, *components: str, target: int | None = None
) -> list[str]:
    """Bring ``schema`` up to date for ``components`` (in that order); returns what was
    applied, as ``component:NNNN_name``. ``target`` stops at that version (tests)."""
    ident = sql.Identifier(schema)
    done: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(schema),))
        conn.execute(sql.SQL(_VERSION_TABLE).format(schema=ident))
        for component in components:
            cursor = conn.cursor(row_factory=tuple_row)
            rows = cursor.execute(sql.SQL(_APPLIED).format(schema=ident), (component,)).fetchall()
            applied = {row[0]: (row[1], row[2]) for row in rows}
            for migration in _pending(component, applied, target):
                conn.execute(migration.statement(schema))
                conn.execute(
                    sql.SQL(_RECORD + "(%s, %s, %s, %s)").format(schema=ident),
                    (component, migration.version, migration.name, migration.checksum),
                )
                done.append(f"{component}:{migration.version:04d}_{migration.name}")
    return done


async def migrate_async(
    conn: psycopg.AsyncConnection[Any], schema: str, *components: str, target: int | None = None
) -> list[str]:
    """``migrate`` on an async connection."""
    ident = sql.Identifier(schema)
    done: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(schema),))
        await conn.execute(sql.SQL(_VERSION_TABLE).format(schema=ident))
        for component in components:
            cursor = conn.cursor(row_factory=tuple_row)
            await cursor.execute(sql.SQL(_APPLIED).format(schema=ident), (component,))
            applied = {row[0]: (row[1], row[2]) for row in await cursor.fetchall()}
            for migration in _pending(component, applied, target):
                await conn.execute(migration.statement(schema))
                await conn.execute(
                    sql.SQL(_RECORD + "(%s, %s, %s, %s)").format(schema=ident),
                    (component, migration.version, migration.name, migration.checksum),
                )
                done.append(f"{component}:{migration.version:04d}_{migration.name}")
    return done
