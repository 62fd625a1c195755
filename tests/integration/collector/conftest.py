"""The ``env`` fixture of the collector's integration tests (see ``harness``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from services.runtime.settings import DatabaseSettings, KafkaSettings
from tests.integration.collector.harness import Env, make_env


@pytest.fixture
def env(
    kafka_settings: KafkaSettings,
    database_settings: DatabaseSettings,
    database_url: str,
    unique: Callable[[str], str],
) -> Iterator[Env]:
    yield from make_env(kafka_settings, database_settings, database_url, unique)
