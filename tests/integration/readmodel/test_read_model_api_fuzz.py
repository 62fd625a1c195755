"""The read model API under fuzzing (its own OpenAPI document, real PostgreSQL with
rows in it): no 5xx, every route answers 2xx; plus the requests that used to
answer 500."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from prometheus_client import CollectorRegistry

from services.readmodel.read_model import create_http_app, migrate
from services.readmodel.settings import ReadModelSettings
from services.runtime.access import AccessSettings, SignedAuth
from services.runtime.httpapi import serve_api_in_thread
from services.runtime.settings import DatabaseSettings
from tests.integration.api_fuzz import FuzzReport, call, fuzz_served_api

EXAMPLES = 60


@pytest.fixture
def base(
    database_settings: DatabaseSettings, database_url: str, access_settings: AccessSettings
) -> Iterator[str]:
    schema = f"t_rm_api_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        migrate(conn, schema, "t.readmodel")
        conn.execute(f"INSERT INTO {schema}.profiles VALUES ('vk', '1', now())")
        conn.execute(f"INSERT INTO {schema}.activity VALUES ('vk', '1', 'GroupJoined', 1)")
        conn.execute(f"INSERT INTO {schema}.memberships VALUES ('vk', 5, '1', true, now())")
    settings = ReadModelSettings(
        database=database_settings, db_schema=schema, access=access_settings
    )
    app = create_http_app(settings, CollectorRegistry(), lambda: None)
    server = serve_api_in_thread(app, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def test_fuzz_read_model_api(base: str, api_secret: str) -> None:
    report = FuzzReport(secret=api_secret)
    profile = call(
        base, report, "GET", "/v1/profiles/vk/1", route="/v1/profiles/{network}/{social_user_id}"
    )
    assert profile.json()["activity"] == {"GroupJoined": 1}
    members = call(
        base,
        report,
        "GET",
        "/v1/groups/vk/5/members?limit=1",
        route="/v1/groups/{network}/{group_id}/members",
    )
    assert members.json()["members"] == ["1"]
    fuzz_served_api("read model API", base, report, examples=EXAMPLES)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/profiles/vk/1%00",
        "/v1/profiles/apple/a%00b",
        "/v1/profiles/vk/%FF",
        "/v1/profiles/xx/1",
        "/v1/groups/vk/5/members?after=%00",
        '/v1/groups/vk/5/members?limit=a"b',
        "/v1/groups/vk/5/members?limit=0",
        "/v1/groups/vk/" + "9" * 5000 + "/members",
        "/v1/groups/vk/%C2%B2/members",
    ],
)
def test_requests_that_used_to_fail_are_refused_with_json(
    base: str, path: str, api_auth: SignedAuth
) -> None:
    response = httpx.get(f"{base}{path}", timeout=30, auth=api_auth)
    assert response.status_code == 400, response.text
    body = response.json()
    assert isinstance(body["error"], str) and isinstance(body["detail"], list)
