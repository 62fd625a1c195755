"""Start-up steps wait out an outage, and only an outage."""

from __future__ import annotations

import threading

import psycopg
import pytest
from confluent_kafka import KafkaError, KafkaException

from services.runtime.db import DatabaseUnavailableError
from services.runtime.kafka import KafkaLoginRefusedError, KafkaUnavailableError
from services.runtime.startup import Startup, is_outage


@pytest.mark.parametrize(
    ("exc", "outage"),
    [
        (KafkaUnavailableError("did not answer"), True),
        (KafkaLoginRefusedError("refused the login"), False),
        (DatabaseUnavailableError("refused"), True),
        (psycopg.OperationalError("server closed the connection"), True),
        (TimeoutError(), True),
        (KafkaException(KafkaError(KafkaError._TRANSPORT)), True),
        (KafkaException(KafkaError(KafkaError._TIMED_OUT)), True),
        (KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)), False),
        (KafkaException(KafkaError(KafkaError._TRANSPORT, fatal=True)), False),
        (ValueError("a bug"), False),
    ],
)
def test_only_what_waiting_cures_is_an_outage(exc: BaseException, outage: bool) -> None:
    assert is_outage(exc) is outage


def test_an_outage_is_waited_out_and_readiness_says_why() -> None:
    startup = Startup("t", threading.Event(), max_backoff_s=0.01)
    seen: list[str | None] = []
    calls: list[BaseException | str] = [
        KafkaUnavailableError("Kafka did not answer"),
        TimeoutError(),
        "up",
    ]

    def step() -> str:
        seen.append(startup.waiting)
        outcome = calls.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    assert startup.until_up(step) == "up"
    assert seen[0] is None
    assert seen[1] is not None and "Kafka did not answer" in seen[1]
    assert startup.waiting is None  # ready to go on


def test_a_failure_that_is_not_an_outage_is_raised_at_once() -> None:
    startup = Startup("t", threading.Event(), max_backoff_s=0.01)
    calls = 0

    def step() -> None:
        nonlocal calls
        calls += 1
        raise KafkaLoginRefusedError("refused the login 'rules'")

    with pytest.raises(KafkaLoginRefusedError):
        startup.until_up(step)
    assert calls == 1


def test_a_stop_ends_the_wait_without_an_error() -> None:
    stop = threading.Event()
    startup = Startup("t", stop, max_backoff_s=30.0)

    def step() -> None:
        threading.Timer(0.2, stop.set).start()
        raise DatabaseUnavailableError("PostgreSQL did not accept a connection")

    assert startup.until_up(step) is None
