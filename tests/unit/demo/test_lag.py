"""The demo's lag verdict after the story: OK with lag 0 everywhere, or what is not."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from services.demo import lag


def _group(name: str, status: str = "OK", lags: tuple[int | None, ...] = (0, 0)) -> dict[str, Any]:
    return {
        "group": name,
        "status": status,
        "error": None,
        "partitions": [{"lag": value} for value in lags],
    }


@pytest.fixture
def monitor() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local server answering ``/api/lag`` with the documents the test queues (the
    last one again and again)."""
    documents: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(documents[0] if len(documents) == 1 else documents.pop(0))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *_: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", documents
    finally:
        server.shutdown()


def test_settles_once_every_group_is_ok_with_lag_zero(
    monitor: tuple[str, list[dict[str, Any]]],
) -> None:
    url, documents = monitor
    documents += [
        {"groups": [_group("demo.rules", "STALL", (1, 0)), _group("demo.detector")]},
        {"groups": [_group("demo.rules"), _group("demo.detector", lags=(0, None))]},
    ]
    result = lag.settle(url, timeout_s=10)
    assert result["settled_s"] is not None
    assert result["groups"]["demo.rules"] == {"status": "OK", "lag": 0, "error": None}
    assert lag.describe(result).startswith("lag: all 2 consumer groups OK ")
    assert lag.describe(result).endswith(" s after the story, lag 0")


def test_the_detector_fed_by_the_collector_needs_ok_not_lag_zero(
    monitor: tuple[str, list[dict[str, Any]]],
) -> None:
    url, documents = monitor
    documents.append({"groups": [_group("demo.rules"), _group("demo.detector", lags=(3, 150))]})
    result = lag.settle(url, timeout_s=5)
    assert result["settled_s"] is not None
    assert lag.describe(result).endswith(
        "lag 0 but demo.detector 153 (the collector keeps collecting)"
    )


def test_a_group_one_behind_is_named_when_it_does_not_settle(
    monitor: tuple[str, list[dict[str, Any]]],
) -> None:
    url, documents = monitor
    documents.append({"groups": [_group("demo.rules", "OK", (1, 0)), _group("demo.readmodel")]})
    result = lag.settle(url, timeout_s=1.0)
    assert result["settled_s"] is None
    assert (
        lag.describe(result) == "lag: not every group OK 30 s after the story: demo.rules OK lag 1"
    )


def test_an_unreachable_monitor_does_not_settle() -> None:
    result = lag.settle("http://127.0.0.1:9", timeout_s=0.5)
    assert result["settled_s"] is None
    assert "(lag monitor) ERR" in lag.describe(result)
