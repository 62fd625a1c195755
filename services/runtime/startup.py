"""A service's start-up steps wait for what they need instead of exiting.

A worker restarted while the broker or PostgreSQL is away (the supervisor starts it
again at once after an exit 75) used to exit 1 from its first check, be started
again, and exit again, until one start happened to fall after the outage; a start
whose admin request went to a broker that had just come back waited 30 s for it.
:func:`until_up` runs the start-up step again, with a short per-attempt timeout in
the step and a backoff between attempts (0.5 s doubling to 5 s, on tenacity), for as
long as its failure is the outage's; the service's ``/readyz`` says what it waits
for meanwhile. A failure that waiting does not cure (a refused login, a wrong topic
layout, a bug) is raised at once, as before.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

import psycopg
from confluent_kafka import KafkaError, KafkaException
from tenacity import RetryCallState, Retrying, retry_if_exception, wait_exponential

from services.runtime.db import DatabaseUnavailableError
from services.runtime.kafka import KafkaLoginRefusedError, KafkaUnavailableError

log = logging.getLogger(__name__)

T = TypeVar("T")

_TRANSIENT_KAFKA = {
    KafkaError._TRANSPORT,
    KafkaError._TIMED_OUT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NETWORK_EXCEPTION,
}


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` is what an unreachable broker or database raises (waiting
    cures it), rather than a refused login, a bad layout or a bug."""
    if isinstance(exc, KafkaLoginRefusedError):
        return False
    if isinstance(exc, KafkaUnavailableError | DatabaseUnavailableError | TimeoutError):
        return True
    if isinstance(exc, psycopg.OperationalError):
        return True
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        error: KafkaError = exc.args[0]
        return not error.fatal() and (error.retriable() or error.code() in _TRANSIENT_KAFKA)
    return False


class Startup:
    """Runs start-up steps until they succeed or the service is stopped; ``waiting``
    is the reason for ``/readyz`` meanwhile (``None`` when not waiting)."""

    def __init__(self, name: str, stop: threading.Event, max_backoff_s: float = 5.0) -> None:
        self.name = name
        self.stop = stop
        self.max_backoff_s = max_backoff_s
        self.waiting: str | None = None

    def until_up(self, step: Callable[[], T]) -> T | None:
        """``step()``'s result, retried while it fails with an outage; ``None`` when the
        service was stopped while waiting. Any other failure is raised at once."""

        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            what = f"{type(error).__name__}: {error}" if error is not None else "?"
            self.waiting = f"starting: waiting for its dependencies ({what:.240})"
            log.warning(
                "%s: cannot start yet (%s); trying again (attempt %d)",
                self.name,
                what,
                state.attempt_number,
            )

        def sleep(seconds: float) -> None:
            self.stop.wait(seconds)  # a stop ends the wait; the next check ends the loop

        retrying = Retrying(
            stop=lambda _state: self.stop.is_set(),
            wait=wait_exponential(multiplier=0.5, max=self.max_backoff_s),
            retry=retry_if_exception(is_outage),
            before_sleep=before_sleep,
            sleep=sleep,
            reraise=True,
        )
        try:
            result = retrying(step)
        except Exception as exc:
            if self.stop.is_set() and is_outage(exc):
                return None
            raise
        finally:
            self.waiting = None
        return result
