"""A private world per test (topics, PG schema, app id), removed afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

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
