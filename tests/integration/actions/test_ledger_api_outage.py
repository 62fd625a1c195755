"""The ledger API while PostgreSQL is away and after it returns (real PostgreSQL behind a
switch the test turns off and on): 503 with ``Retry-After`` and ``/readyz`` false within
5 s while it is away, 200 again within 30 s of its return, never a 500; connections
killed between requests are replaced, not handed out."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from pydantic import SecretStr

from services.actions.ledger_api import create_api_app
from services.actions.schema import migrate
from services.actions.settings import ActionsSettings
from services.runtime.access import AccessSettings, SignedAuth
from services.runtime.httpapi import BackgroundApi, serve_api_in_thread
from services.runtime.settings import DatabaseSettings
from tests.integration.outage import (
    TcpSwitch,
    assert_unavailable,
    ready,
    seconds_until,
    terminate_backends,
    with_application_name,
)

BALANCE = "/v1/members/alice/balance"


@pytest.fixture
def schema(database_url: str) -> Iterator[str]:
    name = f"t_ledger_out_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        migrate(conn, name)
        conn.execute(f"INSERT INTO {name}.accounts (member_id, balance) VALUES ('alice', 5)")
    yield name
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def serve(url: str, schema: str, access: AccessSettings) -> BackgroundApi:
    settings = ActionsSettings(
        database=DatabaseSettings(database_url=SecretStr(url)), db_schema=schema, access=access
    )
    return serve_api_in_thread(create_api_app(settings, lambda: None), "127.0.0.1", 0)


def test_postgres_away_is_503_with_retry_after_and_back_is_200(
    database_url: str, schema: str, access_settings: AccessSettings, api_auth: SignedAuth
) -> None:
    switch = TcpSwitch.before(database_url)
    server = serve(switch.url(database_url), schema, access_settings)
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{server.port}", auth=api_auth, timeout=30
        ) as http:
            assert http.get(BALANCE).json()["balance"] == 5
            assert ready(http)

            switch.off()
            seconds_until(lambda: not ready(http), "/readyz false after PostgreSQL went", 5)
            why = http.get("/readyz").json()["reason"]
            assert "PostgreSQL unreachable" in why, why
            began = time.monotonic()
            assert_unavailable(http.get(BALANCE))
            assert_unavailable(http.get("/v1/members/alice/entries"))
            assert time.monotonic() - began < 2, "a 503 while down should not wait on a pool"
            assert http.get("/healthz").status_code == 200

            switch.on()
            statuses: list[int] = []

            def answers() -> bool:
                statuses.append(http.get(BALANCE).status_code)
                return statuses[-1] == 200

            seconds_until(answers, "200 after PostgreSQL came back", 30, every=0.2)
            seconds_until(lambda: ready(http), "/readyz true after PostgreSQL came back", 30)
            assert set(statuses) <= {200, 503}, statuses
            after = [http.get(BALANCE) for _ in range(20)]
            assert [a.status_code for a in after] == [200] * 20, [a.text for a in after]
            assert after[-1].json()["balance"] == 5
    finally:
        server.stop()
        switch.close()


def test_connections_killed_between_requests_are_replaced_not_a_500(
    database_url: str, schema: str, access_settings: AccessSettings, api_auth: SignedAuth
) -> None:
    name = f"t-ledger-{uuid.uuid4().hex[:8]}"
    server = serve(with_application_name(database_url, name), schema, access_settings)
    try:
        with (
            httpx.Client(
                base_url=f"http://127.0.0.1:{server.port}", auth=api_auth, timeout=30
            ) as http,
            psycopg.connect(database_url, autocommit=True) as admin,
        ):
            assert http.get(BALANCE).status_code == 200
            for _ in range(3):
                # the credentials pool and the ledger's pool each hold one at least
                assert terminate_backends(admin, name) >= 2
                answers = [http.get(path) for path in (BALANCE, "/v1/members/alice/entries")]
                assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
            assert ready(http)
    finally:
        server.stop()
