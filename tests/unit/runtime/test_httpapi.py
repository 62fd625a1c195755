"""The API edge's guard and error shape, in-process (no server, no database)."""

from __future__ import annotations

import threading
import time

import psycopg
from fastapi import Query
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from psycopg_pool import PoolTimeout

from services.runtime.db import DatabaseUnavailableError
from services.runtime.health import Dependencies
from services.runtime.httpapi import (
    MAX_DEPTH,
    RETRY_AFTER_S,
    create_api,
    has_nul_escape,
    nesting_depth,
)


def test_nesting_depth_ignores_brackets_inside_strings() -> None:
    assert nesting_depth(b"[" * 100 + b"]" * 100) > MAX_DEPTH
    assert nesting_depth(b'{"a": "' + b"[" * 100 + b'"}') <= MAX_DEPTH
    assert nesting_depth(b'"\\"' + b"[" * 100) <= MAX_DEPTH  # an escaped quote, then no end
    assert nesting_depth(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) == 0  # cheap path: few brackets


def test_nul_escape_counts_backslashes() -> None:
    assert has_nul_escape(b'"a\\u0000"')
    assert not has_nul_escape(b'"a\\\\u0000"')  # an escaped backslash, then text
    assert has_nul_escape(b'"a\\\\\\u0000"')
    assert not has_nul_escape(b'"u0000"')


@given(st.binary(max_size=2000))
def test_the_guard_never_raises(body: bytes) -> None:
    nesting_depth(body)
    has_nul_escape(body)


def _client() -> TestClient:
    app = create_api("t", title="t", max_body=100, invalid_status=400)

    @app.get("/n")
    def number(n: int = Query(ge=1)) -> dict[str, int]:
        return {"n": n}

    @app.post("/echo")
    def echo(body: dict[str, int]) -> dict[str, int]:
        return body

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("boom")

    return TestClient(app, raise_server_exceptions=False)


def test_every_refusal_is_json_with_the_one_shape() -> None:
    client = _client()
    cases = [
        (client.get("/n?n=a%22b"), 400),
        (client.get("/n?n=%00"), 400),
        (client.get("/n?n=%C2%B2"), 400),
        (client.get("/nope"), 404),
        (client.post("/echo", content=b"x" * 101), 413),
        (client.post("/echo", content=b"[" * 80), 400),
        (client.post("/echo", content=b"\xff"), 400),
        (client.post("/echo", content=b'{"a": "\\u0000"}'), 400),
        (client.post("/echo", content=b"{oops"), 400),
        (client.get("/boom"), 500),
    ]
    for response, status in cases:
        assert response.status_code == status, response.text
        body = response.json()
        assert isinstance(body["error"], str) and isinstance(body["detail"], list)
    assert client.get("/n?n=3").json() == {"n": 3}
    assert client.get("/healthz").json() == {"service": "t", "status": "ok"}
    assert client.get("/readyz").json()["ready"] is True
    assert client.get("/metrics").status_code == 200


def test_database_errors_answer_503_with_retry_after_never_500() -> None:
    app = create_api("t", title="t")
    raised: list[Exception] = [
        psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
        psycopg.OperationalError("server closed the connection unexpectedly"),
        PoolTimeout("couldn't get a connection after 5.00 sec"),
        DatabaseUnavailableError("PostgreSQL did not accept a connection"),
    ]

    @app.get("/read/{n}")
    def read(n: int) -> None:
        raise raised[n]

    client = TestClient(app, raise_server_exceptions=False)
    for n in range(len(raised)):
        answer = client.get(f"/read/{n}")
        assert answer.status_code == 503, answer.text
        assert answer.headers["Retry-After"] == str(RETRY_AFTER_S)
        assert answer.json() == {"error": "PostgreSQL is unavailable; retry later", "detail": []}


def test_a_dependency_down_makes_readyz_and_every_route_503() -> None:
    down = threading.Event()

    def probe() -> None:
        if down.is_set():
            raise ConnectionError("refused")

    dependencies = Dependencies({"PostgreSQL": probe}, interval_s=0.05, timeout_s=0.5)
    app = create_api("t", lambda: "consumer stuck", title="t", dependencies=dependencies)

    @app.get("/v1/thing")
    def thing() -> dict[str, bool]:
        return {"ok": True}

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/v1/thing").json() == {"ok": True}
        assert client.get("/readyz").json()["reason"] == "consumer stuck"
        down.set()
        deadline = time.monotonic() + 5
        while client.get("/readyz").json()["reason"] == "consumer stuck":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["reason"] == "PostgreSQL unreachable (ConnectionError: refused)"
        refused = client.get("/v1/thing")
        assert refused.status_code == 503 and refused.headers["Retry-After"]
        assert refused.json()["error"].startswith("PostgreSQL unreachable")
        for open_route in ("/healthz", "/metrics", "/openapi.json"):
            assert client.get(open_route).status_code == 200
        down.clear()
        deadline = time.monotonic() + 5
        while client.get("/v1/thing").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)
