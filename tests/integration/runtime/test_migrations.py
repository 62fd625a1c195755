"""Versioned migrations (services/runtime/migrations.py) on a real PostgreSQL: a
database made before the version table existed and a fresh one end with the same
schema; a changed migration is refused; concurrent first starts do not race."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from services.runtime import migrations
from services.runtime.migrations import COMPONENTS, MigrationError, load, migrate

COMPONENT_SETS = {
    "actions": ("pgsink", "actions"),
    "rules": ("rules",),
    "readmodel": ("pgsink", "readmodel"),
    "collector": ("collector",),
}
"""Which components share a schema, as the services migrate them."""


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def schemas(conn: psycopg.Connection[Any]) -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for schema in made:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _schema(schemas: list[str], what: str) -> str:
    name = f"t_mig_{what}_{uuid.uuid4().hex[:8]}"
    schemas.append(name)
    return name


def shape(conn: psycopg.Connection[Any], schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """Tables, columns, indexes and constraints of ``schema``, with its name taken out
    so two schemas compare."""

    def rows(query: str) -> list[tuple[Any, ...]]:
        found = conn.execute(query, (schema,)).fetchall()
        return sorted(tuple(str(v).replace(schema, "<schema>") for v in row) for row in found)

    return {
        "columns": rows(
            "SELECT table_name, column_name, data_type, is_nullable, column_default "
            "FROM information_schema.columns WHERE table_schema = %s"
        ),
        "indexes": rows("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s"),
        "constraints": rows(
            "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid) "
            "FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
            "WHERE n.nspname = %s"
        ),
    }


@pytest.mark.parametrize("service", sorted(COMPONENT_SETS))
def test_an_old_database_migrates_to_the_same_schema_as_a_fresh_one(
    conn: psycopg.Connection[Any], schemas: list[str], service: str
) -> None:
    components = COMPONENT_SETS[service]
    fresh = _schema(schemas, "fresh")
    applied = migrate(conn, fresh, *components)
    assert applied == [f"{c}:{m.version:04d}_{m.name}" for c in components for m in load(c)], (
        "a fresh schema gets every migration, in order"
    )
    assert migrate(conn, fresh, *components) == [], "and nothing the second time"

    # An old database: the baselines' tables as the code before the version table made
    # them (the same statements, run bare), plus everything later from version 1 on.
    old = _schema(schemas, "old")
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(old)))
    for component in components:
        conn.execute(load(component)[0].statement(old))
    assert "schema_migrations" not in {row[0] for row in shape(conn, old)["columns"]}
    migrate(conn, old, *components)

    assert shape(conn, old) == shape(conn, fresh)
    recorded = conn.execute(
        sql.SQL("SELECT component, version FROM {}.schema_migrations").format(sql.Identifier(old))
    ).fetchall()
    assert sorted(recorded) == sorted((c, m.version) for c in components for m in load(c))


def test_a_migration_changed_after_it_was_applied_is_refused(
    conn: psycopg.Connection[Any], schemas: list[str]
) -> None:
    schema = _schema(schemas, "changed")
    migrate(conn, schema, "rules")
    conn.execute(
        sql.SQL("UPDATE {}.schema_migrations SET checksum = 'edited' WHERE version = 1").format(
            sql.Identifier(schema)
        )
    )
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(conn, schema, "rules")


def test_a_schema_newer_than_the_code_is_refused(
    conn: psycopg.Connection[Any], schemas: list[str]
) -> None:
    schema = _schema(schemas, "newer")
    migrate(conn, schema, "rules")
    conn.execute(
        sql.SQL(
            "INSERT INTO {}.schema_migrations (component, version, name, checksum) "
            "VALUES ('rules', 99, 'future', 'x')"
        ).format(sql.Identifier(schema))
    )
    with pytest.raises(MigrationError, match="newer than this code"):
        migrate(conn, schema, "rules")


def test_services_starting_at_once_on_a_fresh_database_do_not_race(
    database_url: str, conn: psycopg.Connection[Any], schemas: list[str]
) -> None:
    schema = _schema(schemas, "race")
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def one() -> None:
        try:
            with psycopg.connect(database_url, autocommit=True) as mine:
                start.wait()
                migrate(mine, schema, "pgsink", "actions")
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    count = conn.execute(
        sql.SQL("SELECT count(*) FROM {}.schema_migrations").format(sql.Identifier(schema))
    ).fetchone()
    assert count is not None
    assert count[0] == len(load("pgsink")) + len(load("actions"))


def test_every_component_has_a_baseline_and_no_gaps() -> None:
    for component in COMPONENTS:
        found = migrations.load(component)
        assert found, component
        assert [m.version for m in found] == list(range(1, len(found) + 1))
        assert "{schema}" in found[0].text
