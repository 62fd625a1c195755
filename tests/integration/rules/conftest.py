"""A private world per test (topics, PG schema, app id), removed afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest

from services.rules.offer_store import OfferStore
from services.rules.offers_api import create_app
from services.rules.settings import RulesSettings
from services.runtime.access import AccessSettings
from services.runtime.httpapi import serve_api_in_thread
from services.runtime.settings import DatabaseSettings, KafkaSettings
from tests.integration.rules.harness import Env, drop_env, make_env


@pytest.fixture
def rules_env(
    kafka_settings: KafkaSettings, database_settings: DatabaseSettings
) -> Iterator[Callable[[str], Env]]:
    made: list[Env] = []

    def make(name: str) -> Env:
        env = make_env(kafka_settings, database_settings, name)
        made.append(env)
        return env

    yield make
    for env in made:
        drop_env(env)


@pytest.fixture
def schema(database_settings: DatabaseSettings) -> Iterator[str]:
    """A PostgreSQL schema of the test's own for the offer store, dropped afterwards."""
    name = f"rules_t_{uuid.uuid4().hex[:8]}"
    yield name
    with psycopg.connect(database_settings.database_url.get_secret_value(), autocommit=True) as c:
        c.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.fixture
def base(
    database_settings: DatabaseSettings, schema: str, access_settings: AccessSettings
) -> Iterator[str]:
    """The offers API serving the test's schema on a free port: its base URL."""
    store = OfferStore(database_settings, schema)
    store.migrate()
    settings = RulesSettings(database=database_settings, db_schema=schema, access=access_settings)
    server = serve_api_in_thread(create_app(store, settings), "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()
