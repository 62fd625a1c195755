"""The PostgreSQL-sink runtime's decisions that need no broker: which failures are
transient (retry, nothing dead-lettered) and what ``/readyz`` says before the loop runs."""

from __future__ import annotations

from typing import Any, ClassVar

import psycopg
import pytest
from pydantic import SecretStr

from services.contracts.codec import make_codec
from services.contracts.topics import TopicSettings
from services.runtime.db import DatabaseUnavailableError
from services.runtime.pgsink import (
    Emit,
    Handler,
    Item,
    OffsetConflictError,
    PgSinkConfig,
    PgSinkWorker,
)
from services.runtime.sender import DeliveryError
from services.runtime.settings import DatabaseSettings, KafkaSettings


class RaceError(RuntimeError):
    pass


class Probe(Handler[Any]):
    name: ClassVar[str] = "probe"
    topic: ClassVar[str] = "loyalty.commands.bonus"
    expected: ClassVar[tuple[type, ...]] = ()
    transient: ClassVar[tuple[type[BaseException], ...]] = (RaceError,)

    def apply(self, conn: psycopg.Connection, items: list[Item[Any]], performed: Any) -> list[Emit]:
        return []


def _worker() -> PgSinkWorker[Any]:
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1")
    return PgSinkWorker(
        Probe(),
        PgSinkConfig(group="g.probe", schema="probe"),
        kafka_settings=kafka,
        database=DatabaseSettings(database_url=SecretStr("postgresql://nobody@127.0.0.1:1/x")),
        topics=TopicSettings(prefix="t."),
        codec=make_codec(kafka),
    )


@pytest.mark.parametrize(
    "error",
    [
        psycopg.OperationalError("server closed the connection unexpectedly"),
        psycopg.errors.SerializationFailure("could not serialize access"),
        psycopg.errors.DeadlockDetected("deadlock detected"),
        psycopg.errors.LockNotAvailable("canceling statement due to lock timeout"),
        psycopg.errors.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction"),
        psycopg.InterfaceError("the connection is closed"),
        DatabaseUnavailableError("PostgreSQL did not accept a connection"),
        DeliveryError("1 records undelivered"),
        OffsetConflictError("stored offset moved"),
        RaceError("declared by the handler"),
    ],
)
def test_failures_of_the_environment_are_retried_not_dead_lettered(error: Exception) -> None:
    assert _worker()._transient(error)


@pytest.mark.parametrize(
    "error",
    [
        psycopg.errors.NumericValueOutOfRange("bigint out of range"),
        psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"),
        psycopg.errors.CheckViolation("new row violates check constraint"),
        KeyError("a handler bug"),
        OverflowError("int too big to convert"),
    ],
)
def test_failures_of_a_record_are_dead_lettered(error: Exception) -> None:
    assert not _worker()._transient(error)


def test_not_ready_before_the_loop_runs_and_the_handler_is_bound() -> None:
    worker = _worker()
    assert worker.not_ready() == "starting"
    assert worker.topic == "t.loyalty.commands.bonus"
    assert worker.deadletter_topic == "t.loyalty.deadletter"
    assert worker.handler.group == "g.probe"
