"""The stream worker's watchdog: a transactional call blocked past its timeout ends the
process (librdkafka #5456/#5511), one that returns in time does not (no broker)."""

from __future__ import annotations

import threading
import time

import pytest

from services.contracts.codec import make_codec
from services.runtime import stream
from services.runtime.settings import KafkaSettings
from services.runtime.stream import STUCK_EXIT_CODE, StreamConfig, StreamWorker


def _worker() -> StreamWorker:
    settings = KafkaSettings(bootstrap_servers="127.0.0.1:1")
    return StreamWorker(
        settings,
        StreamConfig(group="t.watchdog"),
        handlers={},
        codec=make_codec(settings),
        deadletter_topic="t.dead",
    )


def test_a_call_blocked_past_its_timeout_ends_the_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exited = threading.Event()
    codes: list[int] = []

    def fake_exit(code: int) -> None:
        codes.append(code)
        exited.set()
        worker.stop()  # the real os._exit never returns; end the watch loop instead

    monkeypatch.setattr("services.runtime.stream.os._exit", fake_exit)
    monkeypatch.setattr(stream, "STUCK_GRACE_S", 0.0)
    worker = _worker()
    worker._start_watchdog()
    with worker._bounded("send_offsets_to_transaction", 0.5):
        assert exited.wait(10)
    assert codes == [STUCK_EXIT_CODE]


def test_a_call_that_returns_in_time_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    codes: list[int] = []
    monkeypatch.setattr("services.runtime.stream.os._exit", codes.append)
    monkeypatch.setattr(stream, "STUCK_GRACE_S", 0.0)
    worker = _worker()
    worker._start_watchdog()
    with worker._bounded("commit_transaction", 3.0):
        time.sleep(1.5)
    time.sleep(2.5)  # past the deadline the call would have had: nothing is blocked now
    worker.stop()
    assert codes == []
