"""Readiness probes: a dependency that fails, hangs or comes back shows in not_ready."""

from __future__ import annotations

import threading
import time

from services.runtime.checkpoint import EXIT_TEMPFAIL, RestartNeededError, backoff_s, exit_code
from services.runtime.health import Dependencies


def _wait(check: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_a_failing_probe_names_its_dependency_until_it_answers_again() -> None:
    up = threading.Event()

    def probe() -> None:
        if not up.is_set():
            raise ConnectionError("refused\n\tby the server")

    deps = Dependencies({"PostgreSQL": probe}, interval_s=0.05, timeout_s=0.2).start()
    try:
        _wait(lambda: deps.down().get("PostgreSQL", "").startswith("ConnectionError"))
        assert deps.not_ready() == "PostgreSQL unreachable (ConnectionError: refused by the server)"
        up.set()
        _wait(lambda: deps.not_ready() is None)
    finally:
        deps.stop()


def test_a_probe_that_hangs_counts_as_down() -> None:
    release = threading.Event()
    calls = 0

    def probe() -> None:
        nonlocal calls
        calls += 1
        if calls > 1:
            release.wait(10)  # a server that stopped answering (SIGSTOP)

    deps = Dependencies({"Kafka": probe}, interval_s=0.05, timeout_s=0.1).start()
    try:
        _wait(lambda: deps.not_ready() is None)
        _wait(lambda: "Kafka unreachable (no answer for" in (deps.not_ready() or ""), 5)
    finally:
        release.set()
        deps.stop()


def test_not_probed_yet_is_not_ready() -> None:
    deps = Dependencies({"PostgreSQL": lambda: None})
    assert deps.not_ready() == "PostgreSQL unreachable (not probed yet)"


def test_backoff_doubles_to_its_ceiling_and_exit_codes_say_what_to_do() -> None:
    assert [backoff_s(n, 5.0) for n in (1, 2, 3, 4, 5, 9)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert exit_code(RestartNeededError("stuck")) == EXIT_TEMPFAIL == 75
    assert exit_code(ValueError("bug")) == 1
