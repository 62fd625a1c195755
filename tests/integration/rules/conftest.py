"""A private world per test (topics, PG schema, app id), removed afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest

from services.runtime import kafka
from services.runtime.settings import DatabaseSettings, KafkaSettings
from tests.integration.rules.harness import Env, make_env


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
    admin = kafka.admin(kafka_settings)
    for env in made:
        with psycopg.connect(
            database_settings.database_url.get_secret_value(), autocommit=True
        ) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {env.schema} CASCADE")
        names = [
            t
            for t in admin.list_topics(timeout=30).topics
            if t.startswith((env.topics.prefix, env.app_id))
        ]
        for future in admin.delete_topics(names).values() if names else ():
            try:
                future.result(30)
            except Exception:  # cleanup is best effort
                continue
