"""The ledger read API under fuzzing (its own OpenAPI document, real PostgreSQL with
a ledger in it): no 5xx, every route answers 2xx; plus the requests that used to
answer 500 (a NUL reaching PostgreSQL, an error body that was not JSON)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from services.actions.ledger_api import create_api_app
from services.actions.schema import migrate
from services.actions.settings import ActionsSettings
from services.runtime.access import AccessSettings, SignedAuth
from services.runtime.httpapi import serve_api_in_thread
from services.runtime.settings import DatabaseSettings
from tests.integration.api_fuzz import FuzzReport, call, fuzz_served_api

EXAMPLES = 60


@pytest.fixture
def base(
    database_settings: DatabaseSettings, database_url: str, access_settings: AccessSettings
) -> Iterator[str]:
    schema = f"t_ledger_api_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        migrate(conn, schema)
        conn.execute(f"INSERT INTO {schema}.accounts (member_id, balance) VALUES ('alice', 5)")
    settings = ActionsSettings(database=database_settings, db_schema=schema, access=access_settings)
    server = serve_api_in_thread(create_api_app(settings, lambda: None), "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def test_fuzz_ledger_api(base: str, api_secret: str, api_auth: SignedAuth) -> None:
    report = FuzzReport(secret=api_secret)
    for what in ("balance", "entries", "deliveries"):
        route = f"/v1/members/{{member_id}}/{what}"
        assert call(base, report, "GET", f"/v1/members/alice/{what}", route=route).is_success
    balance = httpx.get(f"{base}/v1/members/alice/balance", auth=api_auth)
    assert balance.json()["balance"] == 5
    fuzz_served_api("ledger API", base, report, examples=EXAMPLES)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/members/al%00ice/balance",
        "/v1/members/alice/entries?limit=1%00",
        "/v1/members/alice/deliveries?x=%00",
        "/v1/members/%FF/entries",
        '/v1/members/alice/entries?limit=a"b',
        "/v1/members/alice/entries?limit=0",
        "/v1/members/alice/entries?limit=" + "9" * 5000,
        "/v1/members/a%20b/balance",
    ],
)
def test_requests_that_used_to_fail_are_refused_with_json(
    base: str, path: str, api_auth: SignedAuth
) -> None:
    response = httpx.get(f"{base}{path}", timeout=30, auth=api_auth)
    assert response.status_code == 400, response.text
    body = response.json()
    assert isinstance(body["error"], str) and isinstance(body["detail"], list)
